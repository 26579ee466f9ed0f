//! The parsers refuse what their scripts never send.

use super::*;

fn reply(outcome: &str) -> Reply {
    Reply {
        outcome: outcome.to_owned(),
        access: None,
        token: None,
        retry_after_ms: None,
    }
}

#[test]
fn moves_parse_into_kinds_and_audit_ids() {
    let moves = parse_moves("challenge@1-0,token_received@2-1").expect("moves");
    assert_eq!(moves[0].to, Moved::Challenge);
    assert_eq!(moves[1].to, Moved::To(Status::TokenReceived));
    assert_eq!(moves[1].audit_id, "2-1");
    assert!(parse_moves("challenge").is_err(), "no audit id");
    assert!(parse_moves("done@1-0").is_err(), "no such status");
}

#[test]
fn an_outcome_a_script_never_sends_is_an_error_not_a_default() {
    assert!(matches!(
        Cancel::outcome(reply("not_found")),
        Ok(Settled::NotFound)
    ));
    assert!(Cancel::outcome(reply("cancelled")).is_err());
    assert!(
        Cancel::outcome(reply("done")).is_err(),
        "done needs the hash"
    );
    assert!(Expire::outcome(reply("gone")).is_ok());
    assert!(Expire::outcome(reply("waiting")).is_err());
    assert!(SubmitToken::outcome(reply("throttled")).is_err());
    let mut throttled = reply("throttled");
    throttled.retry_after_ms = Some("1500".to_owned());
    assert!(matches!(
        SubmitToken::outcome(throttled),
        Ok(Submitted::Throttled(wait)) if wait == Duration::from_millis(1500)
    ));
    assert!(SendQuestion::outcome(reply("skip")).is_ok());
    assert!(SendQuestion::outcome(reply("skipped")).is_err());
    assert!(matches!(
        PostChallenge::outcome(reply("superseded")),
        Ok(Posted::Superseded(None))
    ));
    assert!(Read::outcome(reply("refused")).is_err());
}
