//! The rules over images that involve machines: an image a machine is deploying cannot be
//! deleted. The cache itself (`images/`) knows nothing of machines.

use super::{Principal, Service, ServiceError};
use crate::images::{Image, records::base_arch};
use crate::model::{Machine, Status};

impl Service {
    /// Deletes an image (admins), refused with 409 while a machine deploys it. The check runs in
    /// the delete's own transaction, so a deploy cannot start between the two.
    pub async fn delete_image(&self, p: &Principal, name: &str) -> Result<(), ServiceError> {
        if !p.is_admin() {
            return Err(ServiceError::Forbidden(
                "only admins may delete images".into(),
            ));
        }
        self.images
            .delete_image_unless(name, |image, is_default, machines| {
                machines
                    .iter()
                    .filter(|m| deploys(m, image, is_default))
                    .map(|m| m.system_id.clone())
                    .collect()
            })
            .await?;
        Ok(())
    }
}

/// Whether `m` is deploying `image`: by name, or as the default of its OS and architecture for a
/// deploy that names none (what `ImageCache::deploy_image` would pick for it).
fn deploys(m: &Machine, image: &Image, is_default: bool) -> bool {
    if m.status != Status::Deploying {
        return false;
    }
    let (name, osystem) = m
        .deploy
        .as_ref()
        .map(|d| (d.image.as_str(), d.osystem.as_str()))
        .unwrap_or_default();
    name == image.name
        || (name.is_empty()
            && is_default
            && base_arch(&m.architecture) == image.arch
            && (osystem.is_empty() || osystem == image.os))
}
