//! The kinds of challenge a bank sends, and the rules an answer must follow
//! to be accepted before it burns one of the bank's attempts.

use std::fmt;

use base64::Engine;
use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::ToSchema;

use super::Access;
use super::text::{
    BankName, ChoiceLabel, ChoiceValue, CustomerId, ExpiresIn, Instructions, Invalid, Question,
    Token, ValidationMessage,
};

/// What kind of answer the challenge expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A one-time code (the default).
    Code,
    /// A free-text answer to a question.
    Text,
    /// One of the challenge's `choices`.
    Choice,
    /// A code read from an image, such as a QR or photoTAN code.
    Image,
    /// Approved in the bank's app: the customer types nothing, and the
    /// scraper reports the outcome itself.
    Decoupled,
}

impl Kind {
    const ALL: [Kind; 5] = [
        Kind::Code,
        Kind::Text,
        Kind::Choice,
        Kind::Image,
        Kind::Decoupled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Code => "code",
            Kind::Text => "text",
            Kind::Choice => "choice",
            Kind::Image => "image",
            Kind::Decoupled => "decoupled",
        }
    }

    pub fn parse(value: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == value)
    }

    /// A validation rule applies to typed answers: codes, text, image codes.
    fn takes_validation(self) -> bool {
        matches!(self, Kind::Code | Kind::Text | Kind::Image)
    }
}

/// One answer the customer may pick.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Choice {
    pub value: ChoiceValue,
    pub label: ChoiceLabel,
}

/// The answers of a `choice` challenge: 2 to 20, with distinct values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Choices(Vec<Choice>);

impl Choices {
    pub fn parse(choices: Vec<Choice>) -> Result<Self, Invalid> {
        if !(2..=20).contains(&choices.len()) {
            return Err(Invalid::new("choices must hold 2 to 20 items"));
        }
        for (i, choice) in choices.iter().enumerate() {
            if choices[..i].iter().any(|c| c.value == choice.value) {
                return Err(Invalid::new("choices must have distinct values"));
            }
        }
        Ok(Self(choices))
    }

    pub fn as_slice(&self) -> &[Choice] {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Choices {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::parse(Vec::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A PNG or JPEG image as a `data:` URI of at most 192 KiB.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ImageUri(String);

impl ImageUri {
    pub const MAX_BYTES: usize = 192 * 1024;

    pub fn parse(value: impl Into<String>) -> Result<Self, Invalid> {
        let value = value.into();
        if value.len() > Self::MAX_BYTES {
            return Err(Invalid::new("image must be at most 192 KiB"));
        }
        let payload = ["data:image/png;base64,", "data:image/jpeg;base64,"]
            .iter()
            .find_map(|prefix| value.strip_prefix(prefix))
            .ok_or_else(|| {
                Invalid::new(
                    "image must be a data:image/png;base64,… or data:image/jpeg;base64,… URI",
                )
            })?;
        if payload.is_empty()
            || base64::engine::general_purpose::STANDARD
                .decode(payload)
                .is_err()
        {
            return Err(Invalid::new("image must carry valid base64 data"));
        }
        Ok(Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ImageUri {
    /// An image is up to 192 KiB: its size says enough in a debug line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ImageUri({} bytes)", self.0.len())
    }
}

impl<'de> Deserialize<'de> for ImageUri {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::parse(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A regular expression the whole token must match, as the HTML `pattern`
/// attribute does: `\d{6}` accepts `123456` and refuses `1234567`. The
/// syntax is Rust's `regex` crate's, which runs in linear time, so no
/// pattern can make a submission slow.
#[derive(Debug, Clone)]
pub struct Validation {
    source: String,
    regex: Regex,
}

impl Validation {
    pub const MAX_CHARS: usize = 256;

    pub fn parse(source: impl Into<String>) -> Result<Self, Invalid> {
        let source = source.into();
        let length = source.chars().count();
        if length == 0 || length > Self::MAX_CHARS {
            return Err(Invalid::new(format!(
                "validation must be 1 to {} characters",
                Self::MAX_CHARS
            )));
        }
        let regex = RegexBuilder::new(&format!("^(?:{source})$"))
            .size_limit(1 << 16)
            .dfa_size_limit(1 << 16)
            .build()
            .map_err(|_| {
                Invalid::new("validation must be a regular expression of a modest size")
            })?;
        Ok(Self { source, regex })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    fn accepts(&self, answer: &str) -> bool {
        self.regex.is_match(answer)
    }
}

impl PartialEq for Validation {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Serialize for Validation {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for Validation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::parse(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A new challenge, as the scraper posts it. Built only by `new`, which
/// checks the rules between fields that no single field can.
#[derive(Debug, Clone)]
pub struct NewChallenge {
    pub customer: CustomerId,
    pub fin_entity_name: BankName,
    pub question: Question,
    pub expires_in: ExpiresIn,
    pub instructions: Option<Instructions>,
    rule: AnswerRule,
    image: Option<ImageUri>,
}

/// What a new challenge asks of the customer: its kind and the extras that
/// go with it.
#[derive(Debug, Clone, Default)]
pub struct ChallengeParts {
    pub kind: Option<Kind>,
    pub choices: Option<Choices>,
    pub image: Option<ImageUri>,
    pub validation: Option<Validation>,
    pub validation_message: Option<ValidationMessage>,
}

impl NewChallenge {
    pub fn new(
        customer: CustomerId,
        fin_entity_name: BankName,
        question: Question,
        expires_in: ExpiresIn,
        instructions: Option<Instructions>,
        parts: ChallengeParts,
    ) -> Result<Self, Invalid> {
        let kind = parts.kind.unwrap_or(Kind::Code);
        let named = kind.as_str();
        match (kind, &parts.choices) {
            (Kind::Choice, None) => return Err(Invalid::new("a choice challenge needs choices")),
            (Kind::Choice, Some(_)) | (_, None) => {}
            (_, Some(_)) => {
                return Err(Invalid::new(format!(
                    "a {named} challenge takes no choices"
                )));
            }
        }
        match (kind, &parts.image) {
            (Kind::Image, None) => return Err(Invalid::new("an image challenge needs an image")),
            (Kind::Image, Some(_)) | (_, None) => {}
            (_, Some(_)) => {
                return Err(Invalid::new(format!("a {named} challenge takes no image")));
            }
        }
        if parts.validation.is_some() && !kind.takes_validation() {
            return Err(Invalid::new(format!(
                "a {named} challenge takes no validation"
            )));
        }
        if parts.validation_message.is_some() && parts.validation.is_none() {
            return Err(Invalid::new("validationMessage needs a validation"));
        }
        Ok(Self {
            customer,
            fin_entity_name,
            question,
            expires_in,
            instructions,
            image: parts.image,
            rule: AnswerRule {
                kind,
                choices: parts.choices.map(|c| c.0),
                validation: parts.validation,
                validation_message: parts.validation_message.map(|m| m.as_str().to_owned()),
            },
        })
    }

    pub fn kind(&self) -> Kind {
        self.rule.kind
    }

    pub fn rule(&self) -> &AnswerRule {
        &self.rule
    }

    pub fn image(&self) -> Option<&ImageUri> {
        self.image.as_ref()
    }
}

/// The rule a token must follow, as stored with the challenge.
#[derive(Debug, Clone, PartialEq)]
pub struct AnswerRule {
    pub kind: Kind,
    pub choices: Option<Vec<Choice>>,
    pub validation: Option<Validation>,
    pub validation_message: Option<String>,
}

impl AnswerRule {
    /// The rule of a challenge as stored; `Invalid` only if its validation
    /// no longer compiles (a hand-edited hash).
    pub fn of(access: &Access) -> Result<AnswerRule, Invalid> {
        Ok(AnswerRule {
            kind: access.kind,
            choices: access.choices.clone(),
            validation: access
                .validation
                .as_deref()
                .map(Validation::parse)
                .transpose()?,
            validation_message: access.validation_message.clone(),
        })
    }

    /// Whether the customer's token may be sent to the bank. The reason
    /// never quotes the token.
    pub fn check(&self, token: &Token) -> Result<(), Invalid> {
        if self.kind == Kind::Decoupled {
            return Err(Invalid::new(
                "this challenge is approved in the bank's app and takes no token",
            ));
        }
        if let Some(choices) = &self.choices
            && !choices.iter().any(|c| c.value.as_str() == token.expose())
        {
            return Err(Invalid::new("the token must be one of the choices' values"));
        }
        if let Some(validation) = &self.validation
            && !validation.accepts(token.expose())
        {
            let message = self.validation_message.as_deref();
            return Err(Invalid::new(message.unwrap_or(
                "the token does not have the form this challenge expects",
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(value: &str) -> Token {
        Token::parse(value).expect("valid token")
    }

    #[test]
    fn validation_matches_the_whole_token() {
        let rule = AnswerRule {
            kind: Kind::Code,
            choices: None,
            validation: Some(Validation::parse(r"\d{6}").expect("valid regex")),
            validation_message: Some("six digits".to_owned()),
        };
        assert!(rule.check(&token("123456")).is_ok());
        let refused = rule.check(&token("1234567")).expect_err("too long");
        assert_eq!(refused.to_string(), "six digits");
        assert!(rule.check(&token("12345a")).is_err());
    }

    #[test]
    fn oversized_or_broken_patterns_are_refused() {
        assert!(Validation::parse("(").is_err());
        assert!(Validation::parse("").is_err());
        assert!(Validation::parse("a".repeat(257)).is_err());
        assert!(
            Validation::parse(r"\w{1000}{1000}").is_err(),
            "too big once compiled"
        );
    }

    #[test]
    fn images_are_png_or_jpeg_data_uris() {
        assert!(ImageUri::parse("data:image/png;base64,iVBORw0KGgo=").is_ok());
        assert!(ImageUri::parse("data:image/gif;base64,R0lGOD==").is_err());
        assert!(ImageUri::parse("data:image/png;base64,not base64!").is_err());
        let huge = format!("data:image/png;base64,{}", "A".repeat(200 * 1024));
        assert!(ImageUri::parse(huge).is_err());
    }

    #[test]
    fn choices_are_two_to_twenty_distinct_values() {
        let choice = |v: &str| Choice {
            value: ChoiceValue::parse(v).expect("value"),
            label: ChoiceLabel::parse("label").expect("label"),
        };
        assert!(Choices::parse(vec![choice("a"), choice("b")]).is_ok());
        assert!(Choices::parse(vec![choice("a")]).is_err());
        assert!(Choices::parse(vec![choice("a"), choice("a")]).is_err());
        assert!(Choices::parse((0..21).map(|i| choice(&i.to_string())).collect()).is_err());
    }
}
