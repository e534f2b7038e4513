//! The stored form of a resource's file attachments (`b/…` keys): a JSON list of the multipart
//! file parts as posted, `[{"field", "filename", "content": base64}]`, so every part and its
//! file name come back exactly.

use base64::Engine as _;
use serde_json::{Value, json};

/// One file part of a multipart request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePart {
    pub field: String,
    pub filename: Option<String>,
    pub contents: Vec<u8>,
}

/// Encodes parts for storage.
pub fn pack(parts: &[FilePart]) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let list: Vec<Value> = parts
        .iter()
        .map(|f| json!({"field": f.field, "filename": f.filename, "content": b64.encode(&f.contents)}))
        .collect();
    serde_json::to_vec(&list).unwrap_or_default()
}

/// Decodes stored parts; a blob that is not in this form yields no parts.
pub fn unpack(blob: &[u8]) -> Vec<FilePart> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let Ok(list) = serde_json::from_slice::<Vec<Value>>(blob) else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|v| {
            Some(FilePart {
                field: v.get("field")?.as_str()?.to_owned(),
                filename: v.get("filename").and_then(Value::as_str).map(str::to_owned),
                contents: b64.decode(v.get("content")?.as_str()?).ok()?,
            })
        })
        .collect()
}

/// The contents of the `file` part (or of the only part), as the chart, profile or kubeconfig
/// uploads carry them.
pub fn file_contents(blob: &[u8]) -> Option<Vec<u8>> {
    let mut parts = unpack(blob);
    let index = parts
        .iter()
        .position(|p| p.field == "file")
        .or_else(|| (parts.len() == 1).then_some(0))?;
    Some(parts.swap_remove(index).contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_round_trip_and_the_file_part_is_found() {
        let parts = vec![
            FilePart {
                field: "other".into(),
                filename: None,
                contents: b"x".to_vec(),
            },
            FilePart {
                field: "file".into(),
                filename: Some("chart.tgz".into()),
                contents: vec![0x1f, 0x8b, 0, 255],
            },
        ];
        let blob = pack(&parts);
        assert_eq!(unpack(&blob), parts);
        assert_eq!(file_contents(&blob), Some(vec![0x1f, 0x8b, 0, 255]));
        assert_eq!(file_contents(b"not json"), None);
    }
}
