//! Reading an access hash's fields back into the domain types.
//!
//! Operators can edit hashes with redis-cli, so nothing here trusts them: a
//! missing or unparsable field is an error naming the field, not a panic.

use std::collections::HashMap;

use super::StoreError;
use crate::model::{Access, AccessId, Choice, CustomerId, Kind, Status, UnixMillis};

pub(super) struct Fields<'a> {
    access: &'a AccessId,
    map: HashMap<String, String>,
}

impl<'a> Fields<'a> {
    /// From flat `field, value, ...` pairs, as HGETALL and the scripts reply.
    pub(super) fn from_pairs(access: &'a AccessId, flat: impl IntoIterator<Item = String>) -> Self {
        let mut map = HashMap::new();
        let mut flat = flat.into_iter();
        while let (Some(field), Some(value)) = (flat.next(), flat.next()) {
            map.insert(field, value);
        }
        Self { access, map }
    }

    /// Removes a field that is not part of the access object.
    pub(super) fn take(&mut self, field: &str) -> Option<String> {
        self.map.remove(field)
    }

    /// Removes every field whose name starts with `prefix`, and returns
    /// their names.
    pub(super) fn take_named(&mut self, prefix: &str) -> Vec<String> {
        let names: Vec<String> = self
            .map
            .keys()
            .filter(|name| name.starts_with(prefix))
            .cloned()
            .collect();
        for name in &names {
            self.map.remove(name);
        }
        names
    }

    pub(super) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn malformed(&self, problem: String) -> StoreError {
        StoreError::malformed(self.access, problem)
    }

    fn text(&self, field: &str) -> Result<&str, StoreError> {
        self.map
            .get(field)
            .map(String::as_str)
            .ok_or_else(|| self.malformed(format!("field `{field}` is missing")))
    }

    fn number<T: std::str::FromStr>(&self, field: &str) -> Result<T, StoreError> {
        self.text(field)?
            .parse()
            .map_err(|_| self.malformed(format!("field `{field}` is not a whole number")))
    }

    fn millis(&self, field: &str) -> Result<UnixMillis, StoreError> {
        self.number(field).map(UnixMillis)
    }

    fn status(&self) -> Result<Status, StoreError> {
        let value = self.text("status")?;
        Status::parse(value).ok_or_else(|| self.malformed(format!("unknown status `{value}`")))
    }

    fn attempt(&self) -> Result<u32, StoreError> {
        self.number("attempt")
    }

    fn optional(&self, field: &str) -> Option<String> {
        self.map.get(field).cloned()
    }

    fn kind(&self) -> Result<Kind, StoreError> {
        let kind = self.text("kind")?;
        Kind::parse(kind).ok_or_else(|| self.malformed(format!("unknown kind `{kind}`")))
    }

    fn choices(&self) -> Result<Option<Vec<Choice>>, StoreError> {
        self.map
            .get("choices")
            .map(|json| serde_json::from_str(json))
            .transpose()
            .map_err(|e| self.malformed(format!("field `choices`: {e}")))
    }

    pub(super) fn into_access(self) -> Result<Access, StoreError> {
        let customer = CustomerId::parse(self.text("customer")?)
            .map_err(|e| self.malformed(format!("field `customer`: {e}")))?;
        Ok(Access {
            access: self.access.clone(),
            customer,
            fin_entity_name: self.text("fin_entity_name")?.to_owned(),
            question: self.text("question")?.to_owned(),
            kind: self.kind()?,
            status: self.status()?,
            attempt: self.attempt()?,
            started_at: self.millis("started_at")?,
            updated_at: self.millis("updated_at")?,
            expires_at: self.millis("expires_at")?,
            reason: self.optional("reason"),
            instructions: self.optional("instructions"),
            choices: self.choices()?,
            validation: self.optional("validation"),
            validation_message: self.optional("validation_message"),
            has_image: self.map.contains_key("has_image") || self.map.contains_key("image"),
            image: self.optional("image"),
        })
    }
}
