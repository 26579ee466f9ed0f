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

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| (*v).to_owned()).collect()
}

#[test]
fn a_reply_parses_into_its_outbox_and_own_moves() {
    let access = AccessId::parse("001").expect("valid id");
    let parsed = Parsed::from_reply(
        &access,
        strings(&[
            "done",
            "1",
            "2",
            "1", //
            "1-0",
            "challenge",
            "3",
            "1700",
            "scraper",
            "", //
            "2-1",
            "rejected",
            "3",
            "1800",
            "scraper",
            "wrong, code|again",
        ]),
    )
    .expect("a reply");
    assert!(parsed.left_waiting);
    assert_eq!(parsed.own, 1);
    assert_eq!(parsed.outbox[0].to, Moved::Challenge);
    assert_eq!(parsed.outbox[0].reason, None);
    assert_eq!(parsed.outbox[1].to, Moved::To(Status::Rejected));
    assert_eq!(parsed.outbox[1].audit_id, "2-1");
    assert_eq!(parsed.outbox[1].attempt, 3);
    assert_eq!(
        parsed.outbox[1].reason.as_deref(),
        Some("wrong, code|again")
    );
    assert!(parsed.reply.access().is_none(), "no hash fields");
    let bad = |reply: &[&str]| Parsed::from_reply(&access, strings(reply)).is_err();
    assert!(bad(&["done", "0", "0"]), "a short header");
    assert!(
        bad(&["done", "0", "1", "0"]),
        "an outbox count past the end"
    );
    assert!(
        bad(&["done", "0", "0", "1"]),
        "more own moves than the outbox"
    );
    assert!(
        bad(&[
            "done", "0", "1", "0", "1-0", "done", "1", "1", "scraper", ""
        ]),
        "no such status"
    );
    assert!(
        bad(&["done", "0", "1", "0", "1-0", "ok", "x", "1", "scraper", ""]),
        "a bad attempt"
    );
    assert!(
        bad(&["done", "0", "1", "0", "1-0", "ok", "1", "1", "robot", ""]),
        "a bad actor"
    );
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
