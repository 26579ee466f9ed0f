//! Scrapers through the crate's own typed `Client`: the challenge a scraper
//! posts, and the scrapers the fault tests keep waiting by the hundred.

use std::time::Duration;

use tokio::task::JoinHandle;
use twofa_bridge::client::{Client, ClientError};
use twofa_bridge::model::{BankName, ChallengeRequest, Question, Token, TokenAnswer};

use super::settled;

/// How many scrapers wait at once in the kill and restart tests.
pub const WAITING_SCRAPERS: usize = 100;

/// A code challenge at bank Real for this customer, as a scraper posts it
/// through the typed client.
pub fn code_challenge(customer: &str, question: &str) -> ChallengeRequest {
    ChallengeRequest::code(
        customer,
        BankName::parse("Real").expect("a bank name"),
        Question::parse(question).expect("a question"),
    )
}

/// Every token names its access, so a token delivered to the wrong
/// scraper cannot go unnoticed.
pub fn token_for(access: &str) -> Token {
    Token::parse(format!("tok.{access}")).expect("a token")
}

/// Many scrapers, each waiting through the client for its access's token.
pub fn spawn_waiting_scrapers(
    scraper: &Client,
    accesses: &[String],
    total: Duration,
) -> Vec<JoinHandle<Result<TokenAnswer, ClientError>>> {
    accesses
        .iter()
        .map(|access| {
            let (scraper, access) = (scraper.clone(), access.clone());
            tokio::spawn(async move { scraper.wait_token(&access, total).await })
        })
        .collect()
}

/// Each scraper got the token of its own access, within `PATIENCE`.
pub async fn assert_tokens_delivered(
    accesses: &[String],
    scrapers: Vec<JoinHandle<Result<TokenAnswer, ClientError>>>,
) {
    for (access, scraper) in accesses.iter().zip(scrapers) {
        let answer = settled(scraper)
            .await
            .unwrap_or_else(|e| panic!("{access}: no token: {e}"));
        assert_eq!(answer.access.as_str(), access);
        assert_eq!(
            answer.token.expose(),
            token_for(access).expose(),
            "{access}"
        );
    }
}
