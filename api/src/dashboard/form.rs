//! Bodies of the dashboard's form posts (`application/x-www-form-urlencoded`).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};

use super::page::PageError;
use crate::http::{ApiError, AppState};

/// Largest form body, in bytes: room for a signal payload of 256 KiB.
const MAX_FORM_BYTES: usize = 256 * 1024 + 4096;

/// The fields of a posted form. A field given twice keeps its first value.
#[derive(Debug, Default)]
pub(super) struct Form {
    values: HashMap<String, String>,
}

impl Form {
    pub(super) fn parse(body: &[u8]) -> Self {
        let mut values = HashMap::new();
        for (name, value) in form_urlencoded::parse(body) {
            values
                .entry(name.into_owned())
                .or_insert_with(|| value.into_owned());
        }
        Self { values }
    }

    /// Returns a field's value, or `None` when it is absent.
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// Returns a field's value with surrounding whitespace removed, or `None` when it is
    /// absent or blank.
    pub(super) fn text(&self, name: &str) -> Option<String> {
        self.get(name)
            .map(str::trim)
            .filter(|value| !value.is_empty())
            .map(str::to_owned)
    }
}

impl FromRequest<AppState> for Form {
    type Rejection = PageError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, PageError> {
        let content_type = request
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).to_ascii_lowercase());
        if !content_type
            .as_deref()
            .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"))
        {
            return Err(PageError::from(ApiError::UnsupportedMediaType(
                "dashboard forms are posted as application/x-www-form-urlencoded; submit the form from the dashboard page".to_owned(),
            )));
        }
        let bytes = Bytes::from_request(request, state).await.map_err(|_| {
            PageError::from(ApiError::PayloadTooLarge(format!(
                "the form could not be read; send at most {MAX_FORM_BYTES} bytes"
            )))
        })?;
        if bytes.len() > MAX_FORM_BYTES {
            return Err(PageError::from(ApiError::PayloadTooLarge(format!(
                "the form has {} bytes; send at most {MAX_FORM_BYTES} bytes, for example a smaller signal payload",
                bytes.len()
            ))));
        }
        Ok(Form::parse(&bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_fields_decode_and_trim() {
        let form = Form::parse(b"name=go&payload=%7B%22a%22%3A1%7D&blank=+&name=second");
        assert_eq!(form.get("name"), Some("go"), "the first value wins");
        assert_eq!(form.text("payload").as_deref(), Some("{\"a\":1}"));
        assert_eq!(form.text("blank"), None, "a blank field reads as absent");
        assert_eq!(form.get("missing"), None);
    }
}
