//! Files users store on the appliance through the MAAS API ([`StoredFile`]): each user's own
//! namespace of filenames, and a random key per file for reads without credentials.

use super::{Principal, Service, ServiceError};
use crate::model::file::{DamagedFile, StoredFile};
use crate::model::ids::{self, now_ms};

impl From<DamagedFile> for ServiceError {
    fn from(e: DamagedFile) -> Self {
        ServiceError::Invalid(e.to_string())
    }
}

fn check_filename(name: &str) -> Result<(), ServiceError> {
    if name.is_empty() || name.len() > 255 || name.contains('/') || name.contains('\0') {
        return Err(ServiceError::Invalid(format!(
            "filename {name:?} must be 1-255 characters without '/'"
        )));
    }
    Ok(())
}

impl Service {
    /// Stores (or replaces) one of the caller's files.
    pub async fn put_file(
        &self,
        p: &Principal,
        filename: &str,
        content: &[u8],
    ) -> Result<StoredFile, ServiceError> {
        check_filename(filename)?;
        let file = StoredFile::new(
            p.username.clone(),
            filename.to_string(),
            ids::random_token(30),
            content,
            now_ms(),
        );
        let f = file.clone();
        self.store
            .write(move |tx| -> Result<(), ServiceError> {
                tx.put_file(&f)?;
                Ok(())
            })
            .await?;
        tracing::info!(filename, owner = %p.username, bytes = content.len(), "file stored");
        Ok(file)
    }

    /// The caller's files whose names start with `prefix`, by name.
    pub fn list_files(
        &self,
        p: &Principal,
        prefix: Option<&str>,
    ) -> Result<Vec<StoredFile>, ServiceError> {
        let all = self.store.read()?.files()?;
        Ok(all
            .into_iter()
            .filter(|f| f.owner == p.username)
            .filter(|f| prefix.is_none_or(|x| f.filename.starts_with(x)))
            .collect())
    }

    /// One of the caller's files.
    pub fn file(&self, p: &Principal, filename: &str) -> Result<StoredFile, ServiceError> {
        self.store
            .read()?
            .file(&p.username, filename)?
            .ok_or_else(|| ServiceError::not_found("file", filename))
    }

    /// A file by its anonymous-access key.
    pub fn file_by_key(&self, key: &str) -> Result<StoredFile, ServiceError> {
        let all = self.store.read()?.files()?;
        all.into_iter()
            .find(|f| !key.is_empty() && f.key == key)
            .ok_or_else(|| ServiceError::not_found("file with key", key))
    }

    /// Deletes one of the caller's files.
    pub async fn delete_file(&self, p: &Principal, filename: &str) -> Result<(), ServiceError> {
        let owner = p.username.clone();
        let name = filename.to_string();
        self.store
            .write_essential(move |tx| -> Result<(), ServiceError> {
                if !tx.remove_file(&owner, &name)? {
                    return Err(ServiceError::not_found("file", &name));
                }
                Ok(())
            })
            .await
    }
}
