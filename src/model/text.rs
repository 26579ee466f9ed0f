//! Validated ids and texts: what a request may put into a Redis key name or
//! in front of a customer.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a value was refused. The message names the field and the rule, and
/// never repeats the value itself (it may be a token).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(String);

impl Invalid {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// The characters allowed in ids and in the key prefix. They become part of
/// Redis key names, ids inside a `{...}` hash tag, so the alphabet excludes
/// braces, spaces and glob characters.
pub(crate) fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')
}

fn check_id(what: &str, value: &str) -> Result<(), Invalid> {
    if value.is_empty() || value.len() > 128 || !value.chars().all(is_key_char) {
        return Err(Invalid(format!(
            "{what} must be 1 to 128 characters from [A-Za-z0-9._:-]"
        )));
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn parse(value: impl Into<String>) -> Result<Self, Invalid> {
                let value = value.into();
                check_id($what, &value)?;
                Ok(Self(value))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                Self::parse(String::deserialize(d)?).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(
    /// The scraper's id for one login to one bank account.
    AccessId,
    "access id"
);
id_type!(
    /// The id TesBack uses for the person who answers the challenges.
    CustomerId,
    "customer id"
);

/// Characters that print nothing: controls, and the invisible formatting
/// characters (zero-width spaces, bidi overrides, BOM) that make a string
/// look like another one.
fn is_unprintable(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{00AD}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}')
}

/// Checks free text shown to a person: 1 to `max` characters, printable, with
/// line breaks and tabs allowed only where `multiline` says so.
pub(super) fn check_text(
    what: &str,
    value: &str,
    max: usize,
    multiline: bool,
) -> Result<(), Invalid> {
    let len = value.chars().count();
    if len == 0 || len > max {
        return Err(Invalid(format!("{what} must be 1 to {max} characters")));
    }
    let allowed = |c: char| multiline && matches!(c, '\n' | '\r' | '\t');
    if value.chars().any(|c| is_unprintable(c) && !allowed(c)) {
        let extra = if multiline {
            " other than line breaks and tabs"
        } else {
            ""
        };
        return Err(Invalid(format!(
            "{what} must not contain control or invisible characters{extra}"
        )));
    }
    Ok(())
}

/// A free text with its length and character rules, checked when parsed.
macro_rules! text_type {
    ($(#[$doc:meta])* $name:ident, $what:literal, $max:literal, $multiline:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn parse(value: impl Into<String>) -> Result<Self, Invalid> {
                let value = value.into();
                check_text($what, &value, $max, $multiline)?;
                Ok(Self(value))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                Self::parse(String::deserialize(d)?).map_err(serde::de::Error::custom)
            }
        }
    };
}

text_type!(
    /// The bank's name as the customer knows it (`finEntityName`).
    BankName,
    "finEntityName",
    128,
    false
);
text_type!(
    /// The bank's question, shown to the customer (`doubleAuthQuestion`).
    Question,
    "doubleAuthQuestion",
    1024,
    true
);
text_type!(
    /// Why the scraper reported an outcome, kept on final states.
    Reason,
    "reason",
    512,
    true
);

text_type!(
    /// What the customer is told beside the question (`instructions`).
    Instructions,
    "instructions",
    1024,
    true
);
text_type!(
    /// What the customer is told when a token breaks the rule.
    ValidationMessage,
    "validationMessage",
    256,
    false
);
text_type!(
    /// The answer a choice stands for.
    ChoiceValue,
    "a choice's value",
    128,
    false
);
text_type!(
    /// What the customer sees for a choice.
    ChoiceLabel,
    "a choice's label",
    256,
    false
);

/// The one-time code the customer typed.
///
/// It has no `Display`, and its `Debug` is redacted, so that no log line or
/// error message can print it by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    pub fn parse(value: impl Into<String>) -> Result<Self, Invalid> {
        let value = value.into();
        check_text("token", &value, 256, false)?;
        Ok(Self(value))
    }

    /// The secret itself: only for the Redis write, and the scraper's answer.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Serialize for Token {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Token {
    /// A hand-written visitor, because serde's own type errors quote the
    /// offending value ("invalid type: integer `987654`"), and a token sent
    /// as a JSON number would then be echoed into errors and logs.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TokenVisitor;

        fn not_a_string<E: serde::de::Error>() -> E {
            E::custom("token must be a JSON string")
        }

        impl<'de> serde::de::Visitor<'de> for TokenVisitor {
            type Value = Token;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a token string")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Token, E> {
                Token::parse(v).map_err(E::custom)
            }

            fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Token, E> {
                Err(not_a_string())
            }

            fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Token, E> {
                Err(not_a_string())
            }

            fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Token, E> {
                Err(not_a_string())
            }

            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Token, E> {
                Err(not_a_string())
            }

            fn visit_unit<E: serde::de::Error>(self) -> Result<Token, E> {
                Err(not_a_string())
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, _: A) -> Result<Token, A::Error> {
                Err(not_a_string())
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, _: A) -> Result<Token, A::Error> {
                Err(not_a_string())
            }
        }

        d.deserialize_any(TokenVisitor)
    }
}

/// How long a challenge waits for its answer: 1 s to 1 h.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpiresIn(Duration);

impl ExpiresIn {
    pub const MAX_SECS: u64 = 3600;

    pub fn from_secs(secs: u64) -> Result<Self, Invalid> {
        if !(1..=Self::MAX_SECS).contains(&secs) {
            return Err(Invalid(format!(
                "expiresIn must be 1 to {} seconds",
                Self::MAX_SECS
            )));
        }
        Ok(Self(Duration::from_secs(secs)))
    }

    pub fn as_duration(self) -> Duration {
        self.0
    }
}

impl Serialize for ExpiresIn {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0.as_secs())
    }
}

impl<'de> Deserialize<'de> for ExpiresIn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::from_secs(u64::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_accept_the_documented_alphabet_only() {
        assert!(AccessId::parse("001").is_ok());
        assert!(AccessId::parse("a.b_c:d-E9").is_ok());
        assert!(AccessId::parse("x".repeat(128)).is_ok());
        for bad in [
            "",
            "a b",
            "{x}",
            "a}",
            "a*",
            "../x",
            "é",
            "a\0",
            &"x".repeat(129),
        ] {
            assert!(AccessId::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn tokens_are_printable_and_bounded() {
        assert!(Token::parse("987654").is_ok());
        assert!(Token::parse("ab cd").is_ok());
        assert!(Token::parse("x".repeat(256)).is_ok());
        for bad in ["", "12\n34", "12\u{0}", "\u{202E}123", &"x".repeat(257)] {
            assert!(Token::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn token_errors_and_debug_never_show_the_value() {
        let token = Token::parse("987654").expect("valid token");
        assert!(!format!("{token:?}").contains("987654"));
        let err = serde_json::from_str::<Token>("987654").expect_err("a number is refused");
        assert!(!err.to_string().contains("987654"), "{err}");
    }

    #[test]
    fn questions_may_span_lines_but_names_may_not() {
        assert!(Question::parse("Code sent to\n+33 6…").is_ok());
        assert!(BankName::parse("Real\nBank").is_err());
        assert!(Question::parse("x".repeat(1025)).is_err());
    }
}
