//! The first-boot setup's record: the boot network the admin chose (applied by the daemon at its
//! next start, see `daemon::serve`) and whether setup is finished.

use super::{Principal, Service, ServiceError};
use crate::model::ids::now_ms;
use crate::model::setup::SetupRecord;

pub(super) fn admins_only(p: &Principal) -> Result<(), ServiceError> {
    if p.is_admin() {
        Ok(())
    } else {
        Err(ServiceError::Forbidden(
            "only admins may set the appliance up".into(),
        ))
    }
}

impl Service {
    /// The setup's record (empty before anything was chosen).
    pub fn setup_record(&self) -> Result<SetupRecord, ServiceError> {
        Ok(self.store.read()?.setup()?.unwrap_or_default())
    }

    /// Keeps the boot network the admin chose (`[[boot.interfaces]]` TOML, already checked by
    /// the caller with `Config::with_setup_boot`) with what the foreign-DHCP probe found.
    pub async fn choose_boot_network(
        &self,
        p: &Principal,
        interfaces_toml: String,
        probe_found: Vec<String>,
    ) -> Result<(), ServiceError> {
        admins_only(p)?;
        self.store
            .write(move |tx| -> Result<(), ServiceError> {
                let mut record = tx.setup()?.unwrap_or_default();
                record.boot_interfaces_toml = Some(interfaces_toml);
                record.probe_found = probe_found;
                tx.put_setup(&record)?;
                Ok(())
            })
            .await?;
        tracing::info!(by = %p.username, "the setup chose a boot network");
        Ok(())
    }

    /// Finishes the setup. Refused (409) until the boot network is decided (chosen and
    /// started, or explicitly none): finishing would hide the one step that must be taken.
    pub async fn finish_setup(
        &self,
        p: &Principal,
        boot_network_decided: bool,
    ) -> Result<(), ServiceError> {
        admins_only(p)?;
        if !boot_network_decided {
            return Err(ServiceError::Conflict(
                "the boot network is not decided yet: choose its interface and mode (or no \
                 network boot) first"
                    .into(),
            ));
        }
        self.store
            .write(move |tx| -> Result<(), ServiceError> {
                let mut record = tx.setup()?.unwrap_or_default();
                record.done_ms.get_or_insert(now_ms());
                tx.put_setup(&record)?;
                Ok(())
            })
            .await?;
        tracing::info!(by = %p.username, "setup finished");
        Ok(())
    }
}
