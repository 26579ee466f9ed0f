//! OpenAPI schemas for the types that check their values by hand when they
//! are parsed. Each schema states the same rule the parser enforces, so a
//! client generated from `/openapi.json` refuses what the gateway refuses.

use std::borrow::Cow;

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{
    ArrayBuilder, KnownFormat, ObjectBuilder, Ref, Schema, SchemaFormat, Type,
};
use utoipa::{PartialSchema, ToSchema};

use super::UnixMillis;
use super::challenge::{Choice, Choices, ImageUri, Validation};
use super::session::SessionTtl;
use super::text::{
    AccessId, BankName, ChoiceLabel, ChoiceValue, CustomerId, ExpiresIn, Instructions, Question,
    Reason, Token, ValidationMessage,
};

/// The alphabet of ids, as `check_id` applies it.
const ID_PATTERN: &str = "^[A-Za-z0-9._:-]{1,128}$";

fn string(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
}

/// Free text shown to a person: 1 to `max` printable characters.
fn text(description: &str, max: usize) -> ObjectBuilder {
    string(description)
        .min_length(Some(1))
        .max_length(Some(max))
}

/// Implements `ToSchema` for `$type` as a named component built by `$build`.
macro_rules! schema {
    ($type:ty, $build:expr) => {
        impl PartialSchema for $type {
            fn schema() -> RefOr<Schema> {
                Schema::from($build).into()
            }
        }

        impl ToSchema for $type {}
    };
}

schema!(
    AccessId,
    string("The scraper's id for one login to one bank account.").pattern(Some(ID_PATTERN))
);
schema!(
    CustomerId,
    string("TesBack's id for the person who answers the challenges.").pattern(Some(ID_PATTERN))
);
schema!(
    BankName,
    text("The bank's name as the customer knows it; one line.", 128)
);
schema!(
    Question,
    text("The bank's question; line breaks allowed.", 1024)
);
schema!(
    Reason,
    text(
        "Why the scraper reported an outcome; line breaks allowed.",
        512
    )
);
schema!(
    Instructions,
    text(
        "What the customer is told beside the question; line breaks allowed.",
        1024
    )
);
schema!(
    ValidationMessage,
    text(
        "What the customer is told when a token breaks the rule.",
        256
    )
);
schema!(ChoiceValue, text("The answer a choice stands for.", 128));
schema!(
    ChoiceLabel,
    text("What the customer sees for a choice.", 256)
);
schema!(
    Token,
    text(
        "The one-time code the customer typed: printable, one line.",
        256
    )
);
schema!(
    Validation,
    text(
        "A regular expression (Rust `regex` syntax) the whole token must match.",
        Validation::MAX_CHARS
    )
);
schema!(
    ImageUri,
    string("A PNG or JPEG image as a base64 `data:` URI of at most 192 KiB.")
        .pattern(Some("^data:image/(png|jpeg);base64,"))
        .max_length(Some(ImageUri::MAX_BYTES))
);
schema!(
    ExpiresIn,
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .description(Some("Seconds until the challenge expires."))
        .minimum(Some(1))
        .maximum(Some(ExpiresIn::MAX_SECS))
);
schema!(
    SessionTtl,
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .description(Some("Seconds the session lives."))
        .minimum(Some(1))
        .maximum(Some(SessionTtl::MAX_SECS))
);
schema!(
    UnixMillis,
    string("An RFC 3339 UTC time with milliseconds.")
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
        .examples(["2026-11-25T16:48:25.007Z"])
);

impl PartialSchema for Choices {
    fn schema() -> RefOr<Schema> {
        ArrayBuilder::new()
            .items(Ref::from_schema_name(Choice::name()))
            .description(Some(
                "The answers of a `choice` challenge, with distinct values.",
            ))
            .min_items(Some(2))
            .max_items(Some(20))
            .into()
    }
}

impl ToSchema for Choices {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((Choice::name().into_owned(), Choice::schema()));
        <Choice as ToSchema>::schemas(schemas);
    }

    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Choices")
    }
}
