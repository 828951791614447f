//! Files users store on the appliance through the MAAS API (Juju keeps its agent tools and
//! bootstrap state there). Each user has their own namespace of filenames; a random key lets a
//! machine fetch one file without credentials (MAAS's anon_resource_uri).

use base64::Engine;
use serde::{Deserialize, Serialize};

/// One stored file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredFile {
    /// The user who uploaded it; filenames are unique per owner.
    pub owner: String,
    /// The name the owner gave it (MAAS's filename), unique among that owner's files.
    pub filename: String,
    /// Random key for anonymous reads of this one file.
    pub key: String,
    /// The content, base64 (JSON has no bytes; an array of numbers would be four times larger).
    content_b64: String,
    /// When it was uploaded, milliseconds since the Unix epoch.
    pub created_ms: u64,
}

/// A stored file whose base64 content does not decode.
#[derive(Debug, thiserror::Error)]
#[error("stored file {filename} is damaged: {source}")]
pub struct DamagedFile {
    /// The file's name.
    pub filename: String,
    /// What base64 found wrong.
    #[source]
    pub source: base64::DecodeError,
}

impl StoredFile {
    /// A file of `owner` called `filename` holding `content`, readable without credentials by
    /// `key`.
    pub fn new(
        owner: String,
        filename: String,
        key: String,
        content: &[u8],
        created_ms: u64,
    ) -> StoredFile {
        StoredFile {
            owner,
            filename,
            key,
            content_b64: base64::engine::general_purpose::STANDARD.encode(content),
            created_ms,
        }
    }

    /// The file's bytes; an error when the stored base64 is damaged.
    pub fn content(&self) -> Result<Vec<u8>, DamagedFile> {
        base64::engine::general_purpose::STANDARD
            .decode(&self.content_b64)
            .map_err(|source| DamagedFile {
                filename: self.filename.clone(),
                source,
            })
    }

    /// The content as stored, base64 (the MAAS face answers with it as is).
    pub fn content_base64(&self) -> &str {
        &self.content_b64
    }
}
