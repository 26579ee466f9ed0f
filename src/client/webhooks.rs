//! The admin's webhook routes, for the CLI and Rust callers.

use reqwest::Method;

use super::{Client, ClientError, error_of, segment};
use crate::model::{CreatedWebhook, Delivery, NewWebhook, RotatedSecret, Webhook};

impl Client {
    /// `POST /v1/webhooks`: the endpoint, with its secret shown this once.
    pub async fn create_webhook(
        &self,
        webhook: &NewWebhook,
    ) -> Result<CreatedWebhook, ClientError> {
        self.call(Method::POST, "/v1/webhooks", Some(webhook)).await
    }

    /// `GET /v1/webhooks`.
    pub async fn webhooks(&self) -> Result<Vec<Webhook>, ClientError> {
        self.call(Method::GET, "/v1/webhooks", None::<&()>).await
    }

    /// `DELETE /v1/webhooks/{id}`, which answers 204 with no body.
    pub async fn delete_webhook(&self, id: &str) -> Result<(), ClientError> {
        let path = format!("/v1/webhooks/{}", segment(id));
        let response = self.send(Method::DELETE, &path, None::<&()>).await?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(error_of(response).await)
        }
    }

    /// `POST /v1/webhooks/{id}/rotate`.
    pub async fn rotate_webhook(&self, id: &str) -> Result<RotatedSecret, ClientError> {
        let path = format!("/v1/webhooks/{}/rotate", segment(id));
        self.call(Method::POST, &path, None::<&()>).await
    }

    /// `GET /v1/webhooks/{id}/deliveries?limit=…`, newest first.
    pub async fn webhook_deliveries(
        &self,
        id: &str,
        limit: usize,
    ) -> Result<Vec<Delivery>, ClientError> {
        let path = format!("/v1/webhooks/{}/deliveries?limit={limit}", segment(id));
        self.call(Method::GET, &path, None::<&()>).await
    }
}
