//! Reading request bodies: JSON, or `multipart/form-data` with a JSON `metadata` part and file
//! parts, exactly as upstream's clients send them.

use axum::http::{HeaderMap, header};
use bytes::Bytes;
use serde_json::Value;

use crate::error::{ApiError, ApiResult};

/// One uploaded file part (stored as posted: see `emco_store::attachment`).
pub use emco_store::attachment::FilePart;

/// A request body, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Body {
    pub json: Value,
    pub files: Vec<FilePart>,
    pub multipart: bool,
}

/// Decodes a body; an empty body is a 400 (as upstream), undecodable JSON a 422.
pub async fn decode(headers: &HeaderMap, bytes: Bytes) -> ApiResult<Body> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.starts_with("multipart/") {
        let boundary = multer::parse_boundary(content_type)
            .map_err(|e| ApiError::Unprocessable(format!("bad multipart content type: {e}")))?;
        return decode_multipart(bytes, boundary).await;
    }
    Ok(Body {
        json: parse_json(&bytes)?,
        files: Vec::new(),
        multipart: false,
    })
}

fn parse_json(bytes: &[u8]) -> ApiResult<Value> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest("Empty body".into()));
    }
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::Unprocessable(format!("body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::Unprocessable("body must be a JSON object".into()));
    }
    Ok(value)
}

async fn decode_multipart(bytes: Bytes, boundary: String) -> ApiResult<Body> {
    let stream = futures::stream::once(async move { Ok::<Bytes, std::io::Error>(bytes) });
    let mut form = multer::Multipart::new(stream, boundary);
    let mut metadata: Option<Bytes> = None;
    let mut files = Vec::new();
    loop {
        let field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                return Err(ApiError::Unprocessable(format!(
                    "malformed multipart body: {e}"
                )));
            }
        };
        let name = field.name().unwrap_or("").to_owned();
        let filename = field.file_name().map(str::to_owned);
        let contents = field.bytes().await.map_err(|e| {
            ApiError::Unprocessable(format!("malformed multipart part {name:?}: {e}"))
        })?;
        match name.as_str() {
            // Like Go's FormValue, the first `metadata` part wins.
            "metadata" if metadata.is_none() => metadata = Some(contents),
            "metadata" => {}
            "file" | "files" => files.push(FilePart {
                field: name,
                filename,
                contents: contents.to_vec(),
            }),
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unexpected multipart part {other:?}: expected `metadata` and `file`/`files`"
                )));
            }
        }
    }
    let Some(metadata) = metadata else {
        return Err(ApiError::BadRequest(
            "multipart body has no `metadata` part".into(),
        ));
    };
    Ok(Body {
        json: parse_json(&metadata)?,
        files,
        multipart: true,
    })
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn multipart(parts: &[(&str, Option<&str>, &str)]) -> (HeaderMap, Bytes) {
        let mut body = String::new();
        for (name, filename, contents) in parts {
            body.push_str("--XyZ\r\n");
            match filename {
                Some(f) => body.push_str(&format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\n\r\n"
                )),
                None => body.push_str(&format!(
                    "Content-Disposition: form-data; name=\"{name}\"\r\n\r\n"
                )),
            }
            body.push_str(contents);
            body.push_str("\r\n");
        }
        body.push_str("--XyZ--\r\n");
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("multipart/form-data; boundary=XyZ"),
        );
        (headers, Bytes::from(body))
    }

    #[tokio::test]
    async fn json_bodies() {
        let headers = HeaderMap::new();
        let ok = decode(
            &headers,
            Bytes::from_static(br#"{"metadata":{"name":"a"}}"#),
        )
        .await
        .unwrap();
        assert_eq!(ok.json["metadata"]["name"], "a");
        assert!(matches!(
            decode(&headers, Bytes::new()).await,
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            decode(&headers, Bytes::from_static(b"metadata=name")).await,
            Err(ApiError::Unprocessable(_))
        ));
        assert!(matches!(
            decode(&headers, Bytes::from_static(b"[1]")).await,
            Err(ApiError::Unprocessable(_))
        ));
    }

    #[tokio::test]
    async fn multipart_bodies() {
        let (h, b) = multipart(&[
            ("metadata", None, r#"{"metadata":{"name":"c1"}}"#),
            ("file", Some("config"), "kube"),
        ]);
        let body = decode(&h, b).await.unwrap();
        assert!(body.multipart);
        assert_eq!(body.json["metadata"]["name"], "c1");
        assert_eq!(body.files.len(), 1);
        assert_eq!(body.files[0].filename.as_deref(), Some("config"));
        assert_eq!(&body.files[0].contents[..], b"kube");

        // Upstream's 422 case: several `metadata` parts holding bare words.
        let (h, b) = multipart(&[
            ("metadata", None, "name"),
            ("metadata", None, "description"),
        ]);
        assert!(matches!(
            decode(&h, b).await,
            Err(ApiError::Unprocessable(_))
        ));

        let (h, b) = multipart(&[("file", Some("x"), "data")]);
        assert!(matches!(decode(&h, b).await, Err(ApiError::BadRequest(_))));
    }
}
