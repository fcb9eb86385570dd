//! The backend's response shapes (contract §3): JSON success bodies, `{"detail": ...}` errors, plain
//! texts for authentication and validation failures.

use axum::body::Body;
use axum::http::{header, HeaderValue, Response, StatusCode};
use serde::Serialize;
use serde_json::json;

/// A response before it becomes HTTP: status, optional content type, body.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Reply {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl Reply {
    pub(crate) fn json<T: Serialize>(status: u16, value: &T) -> Reply {
        match serde_json::to_vec(value) {
            Ok(body) => Reply {
                status,
                content_type: Some("application/json".to_string()),
                body,
            },
            Err(_) => Reply::internal_error(),
        }
    }

    /// `{"detail": message}` as FastAPI's HTTPException writes it.
    pub(crate) fn detail(status: u16, message: &str) -> Reply {
        Reply::json(status, &json!({ "detail": message }))
    }

    /// A text body without any content type (authentication failures).
    pub(crate) fn bare_text(status: u16, text: &str) -> Reply {
        Reply {
            status,
            content_type: None,
            body: text.as_bytes().to_vec(),
        }
    }

    pub(crate) fn plain_text(status: u16, text: &str) -> Reply {
        Reply {
            status,
            content_type: Some("text/plain; charset=utf-8".to_string()),
            body: text.as_bytes().to_vec(),
        }
    }

    pub(crate) fn unauthorized() -> Reply {
        Reply::bare_text(401, "Access denied")
    }

    pub(crate) fn forbidden() -> Reply {
        Reply::bare_text(403, "Access to resource denied, insufficient permissions")
    }

    pub(crate) fn could_not_validate_access() -> Reply {
        Reply::bare_text(500, "Could not validate access")
    }

    pub(crate) fn not_found() -> Reply {
        Reply::detail(404, "Not Found")
    }

    pub(crate) fn method_not_allowed() -> Reply {
        Reply::detail(405, "Method Not Allowed")
    }

    /// What an unhandled exception (bad body, missing keys, database errors) gives.
    pub(crate) fn internal_error() -> Reply {
        Reply::plain_text(500, "Internal Server Error")
    }

    /// 400 `Input validation failed: ...`, with the backend's hint when the request's Content-Type is not
    /// exactly `application/json`.
    pub(crate) fn validation_failed(message: &str, json_content_type: bool) -> Reply {
        let text = if json_content_type {
            format!("Input validation failed: {message}")
        } else {
            format!("Input validation failed: {message} - maybe Content-Type header was not set to application/json?")
        };
        Reply::plain_text(400, &text)
    }

    pub(crate) fn no_content() -> Reply {
        Reply {
            status: 204,
            content_type: None,
            body: Vec::new(),
        }
    }

    pub(crate) fn into_response(self) -> Response<Body> {
        let mut response = Response::new(Body::from(self.body));
        *response.status_mut() =
            StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if let Some(content_type) = self.content_type {
            if let Ok(value) = HeaderValue::from_str(&content_type) {
                response.headers_mut().insert(header::CONTENT_TYPE, value);
            }
        }
        response
    }
}
