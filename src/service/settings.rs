//! The appliance-wide settings: read by anyone signed in, changed by admins, one record.

use super::setup::admins_only;
use super::{Principal, Service, ServiceError};
use crate::model::settings::Settings;

impl Service {
    /// The settings as they are now (a fresh appliance's when none was ever changed).
    pub fn settings(&self) -> Result<Settings, ServiceError> {
        Ok(self.store.read()?.settings()?.unwrap_or_default())
    }

    /// Changes the settings with `change` (admins only), which may refuse with a 400; answers
    /// the settings as stored.
    pub async fn change_settings<F>(
        &self,
        p: &Principal,
        change: F,
    ) -> Result<Settings, ServiceError>
    where
        F: FnOnce(&mut Settings) -> Result<(), String> + Send + 'static,
    {
        admins_only(p)?;
        let settings = self
            .store
            .write(move |tx| -> Result<Settings, ServiceError> {
                let mut settings = tx.settings()?.unwrap_or_default();
                change(&mut settings).map_err(ServiceError::Invalid)?;
                tx.put_settings(&settings)?;
                Ok(settings)
            })
            .await?;
        tracing::info!(by = %p.username, "settings changed");
        Ok(settings)
    }
}
