//! `twofa-bridge demo-scraper`: a scraper that plays a bank, so that the
//! demo page has something to answer. It prints each token it gets, as a
//! demo tool may.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::{CliKind, Remote, failed, usage};
use crate::client::ClientError;
use crate::model::{BankName, ChallengeRequest, ExpiresIn, Kind, Outcome, Question, Reason};

#[derive(Debug, Args)]
#[command(
    after_help = "Posts a challenge, waits for the customer's code, prints it, and reports \
ok; the code 000000 is refused as a bank would (rejected), and a new attempt follows. \
Open the gateway's page at / to answer it.\n\nExample: twofa-bridge demo-scraper --customer c1 --bank Real"
)]
pub struct DemoScraperArgs {
    #[arg(long)]
    customer: String,
    /// The bank's name as the customer knows it.
    #[arg(long, default_value = "Real")]
    bank: String,
    /// The access to use; a new one when absent.
    #[arg(long)]
    access: Option<String>,
    /// code, text or decoupled. A decoupled challenge is approved in the
    /// bank's app: this scraper reports ok after `--approve-after`.
    #[arg(long, value_enum, default_value = "code")]
    kind: CliKind,
    /// Seconds a decoupled challenge takes to be approved.
    #[arg(long, default_value_t = 5)]
    approve_after: u64,
    /// Seconds each challenge waits for the customer.
    #[arg(long, default_value_t = 300)]
    expires_in: u64,
    #[command(flatten)]
    remote: Remote,
}

/// The code a bank refuses in the demo, so that the retry path shows.
const REFUSED_CODE: &str = "000000";

pub async fn demo_scraper(args: DemoScraperArgs) -> ExitCode {
    let access = args
        .access
        .clone()
        .unwrap_or_else(|| format!("demo-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]));
    let request = (|| {
        let question = match args.kind {
            CliKind::Decoupled => "Approve the login in your banking app",
            CliKind::Text => "Type the answer to your security question",
            CliKind::Code => "Type the code we sent you by SMS",
        };
        let mut request = ChallengeRequest::code(
            &args.customer,
            BankName::parse(args.bank.as_str())?,
            Question::parse(question)?,
        );
        request.expires_in = Some(ExpiresIn::from_secs(args.expires_in)?);
        request.kind = Some(Kind::from(args.kind));
        Ok::<_, crate::model::Invalid>(request)
    })();
    let request = match request {
        Ok(request) => request,
        Err(invalid) => return usage(&invalid.to_string()),
    };
    let client = match args.remote.client() {
        Ok(client) => client,
        Err(error) => return failed(&error),
    };
    let run = async {
        loop {
            let posted = client.challenge(&access, &request).await?;
            eprintln!(
                "posted access {access} (attempt {}) for customer {} at {}; answer it on the gateway's page",
                posted.attempt, args.customer, args.bank
            );
            if matches!(args.kind, CliKind::Decoupled) {
                tokio::time::sleep(Duration::from_secs(args.approve_after)).await;
                client.report(&access, Outcome::Ok, None).await?;
                eprintln!("the bank says the login was approved: reported ok");
                return Ok(());
            }
            let answer = client
                .wait_token(&access, Duration::from_secs(args.expires_in))
                .await?;
            println!("{}", answer.token.expose());
            if answer.token.expose() == REFUSED_CODE {
                let reason = Reason::parse("the bank refused the code").ok();
                client.report(&access, Outcome::Rejected, reason).await?;
                eprintln!("the bank refused {REFUSED_CODE}: reported rejected; asking again");
                continue;
            }
            client.report(&access, Outcome::Ok, None).await?;
            eprintln!("the bank accepted the code: reported ok");
            return Ok::<(), ClientError>(());
        }
    };
    match run.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => failed(&error),
    }
}
