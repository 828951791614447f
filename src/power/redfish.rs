//! The Redfish driver: ComputerSystem power and one-time boot override over
//! HTTPS, with reqwest on rustls (ring).
//!
//! Certificates are checked against the system's trust store unless the
//! machine's `insecure_skip_verify` is set (BMCs often ship self-signed
//! certificates; the switch is per machine so one such BMC does not lower
//! the guard for all). Better than switching the check off: the machine's
//! `certificate_sha256` pins the BMC's own certificate, seen over a trusted
//! path (such as the SMBIOS Redfish host interface, from inside the
//! machine). A pinned BMC must present exactly that leaf certificate and
//! prove it holds its key; issuer, expiry and host name no longer matter, and
//! `insecure_skip_verify` is ignored. Proxies from the environment are not
//! used: BMC credentials go straight to the BMC.

use std::error::Error as _;
use std::fmt::Write as _;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use reqwest::{Method, StatusCode};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, SignatureScheme};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::params::RedfishParams;
use super::{
    BootOverride, PowerDriver, PowerError, PowerFuture, PowerParamError, PowerState, PowerType,
    Scrubber, panic_text,
};

const WHAT: &str = "Redfish service";

/// Drives one machine's ComputerSystem through its Redfish service.
pub(crate) struct RedfishDriver {
    /// The machine's parameters (Debug masks the password).
    params: RedfishParams,
    /// Built once per driver: carries the TLS choice of this machine.
    client: reqwest::Client,
    /// The deadline of each operation.
    timeout: Duration,
    /// Hides the password in any text that leaves the driver.
    scrubber: Scrubber,
}

impl std::fmt::Debug for RedfishDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedfishDriver")
            .field("params", &self.params)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// A reply of the service: its status and JSON body (Null when empty or not JSON).
struct Reply {
    status: StatusCode,
    etag: Option<String>,
    body: Value,
}

/// Lowercase hex of a digest, as fingerprints are shown.
fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The leaf certificate the BMC presented is not the pinned one.
#[derive(Debug, thiserror::Error)]
#[error(
    "the BMC presented a certificate with SHA-256 {presented}, but certificate_sha256 pins {pinned}"
)]
struct PinMismatch {
    /// Lowercase hex SHA-256 of the presented leaf certificate (DER).
    presented: String,
    /// Lowercase hex of the machine's `certificate_sha256`.
    pinned: String,
}

/// The rustls error `e` is or wraps. tokio-rustls puts it in an io::Error and
/// reqwest's connector puts that in another; io::Error::source skips both
/// wrappers, so they are opened here.
fn rustls_error_in<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut current = e;
    for _ in 0..8 {
        if let Some(found) = current.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        current = current.downcast_ref::<std::io::Error>()?.get_ref()?;
    }
    None
}

/// The pin mismatch inside a rustls error, if that is what it is (rustls
/// shows it with Debug, so the driver takes the text from here).
fn pin_mismatch(e: &rustls::Error) -> Option<&PinMismatch> {
    match e {
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => {
            other.0.downcast_ref::<PinMismatch>()
        }
        _ => None,
    }
}

/// Accepts exactly one server certificate: the one whose DER has the pinned
/// SHA-256. The chain, issuer, validity period and names are not looked at;
/// the handshake signatures are still checked against the certificate's key,
/// so the server has to hold the pinned certificate's private key.
#[derive(Debug)]
struct PinnedCertificate {
    pin: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        if presented == self.pin {
            return Ok(ServerCertVerified::assertion());
        }
        Err(rustls::Error::InvalidCertificate(CertificateError::Other(
            OtherError(Arc::new(PinMismatch {
                presented: hex(&presented),
                pinned: hex(&self.pin),
            })),
        )))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A rustls client configuration that trusts only the certificate with the
/// SHA-256 `pin` (ring, TLS 1.2 and 1.3, no client certificate).
fn pinned_tls_config(pin: [u8; 32]) -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedCertificate { pin, provider }))
        .with_no_client_auth();
    Ok(config)
}

impl RedfishDriver {
    pub(crate) fn new(params: RedfishParams, timeout: Duration) -> Result<Self, PowerError> {
        // reqwest is built without a crypto provider; install ring once per
        // process (a second install fails harmlessly).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let pinned = params.certificate_sha256.is_some();
        let cannot_build = |e: &dyn std::fmt::Display| PowerError::Tls {
            address: params.base.clone(),
            detail: format!("cannot build the HTTPS client: {e}"),
            pinned,
        };
        let builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .no_proxy();
        let builder = match params.certificate_sha256 {
            // The pin replaces every other certificate check, so it wins
            // over insecure_skip_verify.
            Some(pin) => {
                if params.insecure_skip_verify {
                    tracing::debug!(redfish = %params.base,
                        "certificate_sha256 is set: insecure_skip_verify is ignored, only the pinned certificate is accepted");
                }
                builder.tls_backend_preconfigured(
                    pinned_tls_config(pin).map_err(|e| cannot_build(&e))?,
                )
            }
            None => builder
                .tls_danger_accept_invalid_certs(params.insecure_skip_verify)
                .tls_danger_accept_invalid_hostnames(params.insecure_skip_verify),
        };
        let client = builder.build().map_err(|e| cannot_build(&e))?;
        let scrubber = Scrubber::new([params.pass.expose()]);
        Ok(RedfishDriver {
            params,
            client,
            timeout,
            scrubber,
        })
    }

    /// Bounds `work` by the driver's timeout and contains a panic in it.
    fn run<'a, T: Send + 'a>(
        &'a self,
        during: &'static str,
        work: impl Future<Output = Result<T, PowerError>> + Send + 'a,
    ) -> PowerFuture<'a, T> {
        Box::pin(async move {
            let guarded = AssertUnwindSafe(work).catch_unwind();
            let result = match tokio::time::timeout(self.timeout, guarded).await {
                Ok(Ok(result)) => result,
                Ok(Err(payload)) => Err(PowerError::DriverPanicked {
                    driver: "redfish",
                    detail: self.scrubber.detail(&panic_text(payload.as_ref())),
                }),
                Err(_) => Err(self.timed_out(during)),
            };
            if let Err(e) = &result {
                tracing::warn!(redfish = %self.params.base, op = during, error = %e, "Redfish operation failed");
            }
            result
        })
    }

    fn timed_out(&self, during: &str) -> PowerError {
        PowerError::Timeout {
            what: WHAT,
            address: self.params.base.clone(),
            after: self.timeout,
            during: during.to_owned(),
        }
    }

    /// Turns a transport error into what the user needs to know: certificate,
    /// unreachable, or too slow.
    fn transport_error(&self, e: &reqwest::Error, during: &str) -> PowerError {
        if e.is_timeout() {
            return self.timed_out(during);
        }
        let mut text = e.to_string();
        let mut tls = false;
        let mut source = e.source();
        while let Some(s) = source {
            let rustls_error = rustls_error_in(s);
            if let Some(mismatch) = rustls_error.and_then(pin_mismatch) {
                // The whole story, and short enough that neither fingerprint
                // is cut off by the detail's length limit.
                return PowerError::Tls {
                    address: self.params.base.clone(),
                    detail: self
                        .scrubber
                        .detail(&format!("invalid peer certificate: {mismatch}")),
                    pinned: true,
                };
            }
            tls |= rustls_error.is_some();
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        let lower = text.to_ascii_lowercase();
        if tls || lower.contains("certificate") || lower.contains("tls handshake") {
            return PowerError::Tls {
                address: self.params.base.clone(),
                detail: self.scrubber.detail(&text),
                pinned: self.params.certificate_sha256.is_some(),
            };
        }
        PowerError::Unreachable {
            what: WHAT,
            address: self.params.base.clone(),
            detail: self.scrubber.detail(&text),
        }
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        if_match: Option<&str>,
        during: &str,
    ) -> Result<Reply, PowerError> {
        let url = format!("{}{}", self.params.base, path);
        let mut request = self
            .client
            .request(method, &url)
            .basic_auth(&self.params.user, Some(self.params.pass.expose()))
            .header(reqwest::header::ACCEPT, "application/json")
            .header("OData-Version", "4.0");
        if let Some(tag) = if_match {
            request = request.header(reqwest::header::IF_MATCH, tag);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| self.transport_error(&e, during))?;
        let status = response.status();
        let etag = response
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(&e, during))?;
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(PowerError::AuthenticationFailed {
                what: WHAT,
                address: self.params.base.clone(),
                user: self.params.user.clone(),
                detail: format!(
                    "HTTP {} on {during}{}",
                    status.as_u16(),
                    self.service_message(&body)
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default()
                ),
            });
        }
        if !status.is_success() {
            let detail = self
                .service_message(&body)
                .unwrap_or_else(|| self.scrubber.clean(&String::from_utf8_lossy(&bytes), 200));
            return Err(PowerError::HttpStatus {
                what: WHAT,
                address: self.params.base.clone(),
                operation: format!("{during} ({path})"),
                status: status.as_u16(),
                detail,
            });
        }
        Ok(Reply { status, etag, body })
    }

    /// The message of a Redfish error body (`error.message` and the extended
    /// info messages), scrubbed.
    fn service_message(&self, body: &Value) -> Option<String> {
        let error = body.get("error")?;
        let mut parts: Vec<String> = Vec::new();
        if let Some(m) = error.get("message").and_then(Value::as_str) {
            parts.push(m.to_owned());
        }
        if let Some(infos) = error.get("@Message.ExtendedInfo").and_then(Value::as_array) {
            for info in infos {
                if let Some(m) = info.get("Message").and_then(Value::as_str) {
                    parts.push(m.to_owned());
                }
            }
        }
        (!parts.is_empty()).then(|| self.scrubber.detail(&parts.join("; ")))
    }

    fn protocol(&self, detail: String) -> PowerError {
        PowerError::Protocol {
            what: WHAT,
            address: self.params.base.clone(),
            detail: self.scrubber.detail(&detail),
        }
    }

    /// The path of the machine's ComputerSystem: node_id, or the only member
    /// of /redfish/v1/Systems.
    async fn system_path(&self) -> Result<String, PowerError> {
        if let Some(id) = &self.params.node_id
            && id.starts_with("/redfish/v1/Systems/")
        {
            return Ok(id.trim_end_matches('/').to_owned());
        }
        let reply = self
            .request(
                Method::GET,
                "/redfish/v1/Systems",
                None,
                None,
                "listing systems",
            )
            .await?;
        let members: Vec<String> = reply
            .body
            .get("Members")
            .and_then(Value::as_array)
            .map(|members| {
                members
                    .iter()
                    .filter_map(|m| m.get("@odata.id").and_then(Value::as_str))
                    .map(|s| s.trim_end_matches('/').to_owned())
                    .collect()
            })
            .unwrap_or_default();
        let ids = || {
            members
                .iter()
                .map(|m| m.rsplit('/').next().unwrap_or(m))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match &self.params.node_id {
            Some(id) => members
                .iter()
                .find(|m| m.rsplit('/').next() == Some(id.as_str()))
                .cloned()
                .ok_or_else(|| {
                    PowerError::Params(PowerParamError::Invalid {
                        param: "node_id".to_owned(),
                        reason: format!(
                            "the Redfish service at {} has no system '{id}' (it has: {})",
                            self.params.base,
                            ids()
                        ),
                    })
                }),
            None => match members.as_slice() {
                [only] => Ok(only.clone()),
                [] => Err(self.protocol("/redfish/v1/Systems lists no ComputerSystem".to_owned())),
                _ => Err(PowerError::Params(PowerParamError::Missing {
                    param: format!(
                        "node_id (the service has {} systems: {})",
                        members.len(),
                        ids()
                    ),
                    power_type: PowerType::Redfish,
                })),
            },
        }
    }

    async fn system(&self) -> Result<(String, Reply), PowerError> {
        let path = self.system_path().await?;
        let reply = self
            .request(Method::GET, &path, None, None, "reading the system")
            .await?;
        Ok((path, reply))
    }

    fn power_state_of(&self, system: &Value) -> Result<PowerState, PowerError> {
        // A transition is reported as its target: the reconciler waits for
        // the state it asked for, and "PoweringOn" means it is on its way.
        match system.get("PowerState") {
            Some(Value::String(state)) => match state.as_str() {
                "On" | "PoweringOn" => Ok(PowerState::On),
                "Off" | "PoweringOff" => Ok(PowerState::Off),
                other => {
                    Err(self.protocol(format!("PowerState '{other}' is not a Redfish power state")))
                }
            },
            Some(Value::Null) => Ok(PowerState::Unknown),
            _ => Err(self.protocol("the ComputerSystem has no PowerState".to_owned())),
        }
    }

    /// POSTs ComputerSystem.Reset with the first of `kinds` the service allows.
    async fn reset(&self, path: &str, system: &Value, kinds: &[&str]) -> Result<(), PowerError> {
        let action = system
            .get("Actions")
            .and_then(|a| a.get("#ComputerSystem.Reset"));
        let target = action
            .and_then(|a| a.get("target"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| format!("{path}/Actions/ComputerSystem.Reset"));
        let allowed: Option<Vec<&str>> = action
            .and_then(|a| a.get("ResetType@Redfish.AllowableValues"))
            .and_then(Value::as_array)
            .map(|values| values.iter().filter_map(Value::as_str).collect());
        let kind = match &allowed {
            None => kinds.first().copied(),
            Some(allowed) => kinds.iter().copied().find(|k| allowed.contains(k)),
        }
        .ok_or_else(|| {
            PowerError::Unsupported(format!(
                "the Redfish service at {} allows none of the reset types {} (it allows: {})",
                self.params.base,
                kinds.join(", "),
                allowed.map(|a| a.join(", ")).unwrap_or_default()
            ))
        })?;
        // `target` may be absolute; keep only the path on our base.
        let target_path = match reqwest::Url::parse(&target) {
            Ok(url) => url.path().to_owned(),
            Err(_) => target,
        };
        tracing::info!(redfish = %self.params.base, system = %path, reset = kind, "Redfish reset");
        let reply = self
            .request(
                Method::POST,
                &target_path,
                Some(json!({ "ResetType": kind })),
                None,
                &format!("reset {kind}"),
            )
            .await?;
        tracing::debug!(status = reply.status.as_u16(), "reset accepted");
        Ok(())
    }

    async fn set_boot(&self, efi: bool) -> Result<BootOverride, PowerError> {
        let (path, reply) = self.system().await?;
        let mut boot = json!({
            "BootSourceOverrideTarget": "Pxe",
            "BootSourceOverrideEnabled": "Once",
        });
        // Only send the mode where the service has one: some reject unknown
        // properties.
        let has_mode = reply
            .body
            .get("Boot")
            .is_some_and(|b| b.get("BootSourceOverrideMode").is_some());
        if has_mode {
            boot["BootSourceOverrideMode"] = json!(if efi { "UEFI" } else { "Legacy" });
        }
        tracing::info!(redfish = %self.params.base, system = %path, efi, "Redfish one-time PXE boot");
        self.request(
            Method::PATCH,
            &path,
            Some(json!({ "Boot": boot })),
            reply.etag.as_deref(),
            "setting the boot override",
        )
        .await?;
        let after = self
            .request(
                Method::GET,
                &path,
                None,
                None,
                "reading the boot override back",
            )
            .await?;
        let boot = after.body.get("Boot").cloned().unwrap_or(Value::Null);
        let judged = judge_boot(&boot, efi, has_mode, &self.params.base);
        match &judged {
            Ok(b) => {
                tracing::info!(redfish = %self.params.base, read_back = %b.read_back, warnings = b.warnings.len(), "boot override read back")
            }
            Err(e) => {
                tracing::warn!(redfish = %self.params.base, error = %e, "boot override not kept")
            }
        }
        judged
    }
}

/// Applies the read-back policy (see the module docs of `power`) to the Boot
/// object a service reports after the PATCH.
pub(crate) fn judge_boot(
    boot: &Value,
    efi: bool,
    mode_sent: bool,
    address: &str,
) -> Result<BootOverride, PowerError> {
    let field = |name: &str| boot.get(name).and_then(Value::as_str).unwrap_or("(absent)");
    let target = field("BootSourceOverrideTarget");
    let enabled = field("BootSourceOverrideEnabled");
    let mode = field("BootSourceOverrideMode");
    let read_back = format!(
        "BootSourceOverrideTarget {target}, BootSourceOverrideEnabled {enabled}, \
         BootSourceOverrideMode {mode}"
    );
    if target != "Pxe" || !matches!(enabled, "Once" | "Continuous") {
        return Err(PowerError::BootOverrideNotKept {
            address: address.to_owned(),
            read_back,
        });
    }
    let mut warnings = Vec::new();
    let persistent = enabled == "Continuous";
    if persistent {
        warnings.push(
            "the BMC reads back BootSourceOverrideEnabled Continuous where Once was set: it will \
             network-boot every time (rackbox then tells a deployed machine to boot its disk)"
                .to_owned(),
        );
    }
    let reported_efi = match mode {
        "UEFI" => Some(true),
        "Legacy" => Some(false),
        _ => None,
    };
    if mode_sent && reported_efi != Some(efi) {
        warnings.push(format!(
            "asked for BootSourceOverrideMode {}, the BMC reads back {mode}",
            if efi { "UEFI" } else { "Legacy" }
        ));
    }
    Ok(BootOverride {
        confirmed: true,
        read_back,
        persistent: Some(persistent),
        efi: reported_efi,
        warnings,
    })
}

impl PowerDriver for RedfishDriver {
    fn power_type(&self) -> PowerType {
        PowerType::Redfish
    }

    fn power_on(&self) -> PowerFuture<'_, ()> {
        self.run("power on", async {
            let (path, reply) = self.system().await?;
            if reply.body.get("PowerState").and_then(Value::as_str) == Some("On") {
                tracing::info!(redfish = %self.params.base, "already on");
                return Ok(());
            }
            self.reset(&path, &reply.body, &["On", "ForceOn"]).await
        })
    }

    fn power_off(&self, soft: bool) -> PowerFuture<'_, ()> {
        self.run(
            if soft { "soft power off" } else { "power off" },
            async move {
                let (path, reply) = self.system().await?;
                if reply.body.get("PowerState").and_then(Value::as_str) == Some("Off") {
                    tracing::info!(redfish = %self.params.base, "already off");
                    return Ok(());
                }
                let kinds: &[&str] = if soft {
                    &["GracefulShutdown"]
                } else {
                    &["ForceOff"]
                };
                self.reset(&path, &reply.body, kinds).await
            },
        )
    }

    fn power_cycle(&self) -> PowerFuture<'_, ()> {
        self.run("power cycle", async {
            let (path, reply) = self.system().await?;
            if self.power_state_of(&reply.body)? == PowerState::Off {
                return self.reset(&path, &reply.body, &["On", "ForceOn"]).await;
            }
            self.reset(&path, &reply.body, &["ForceRestart", "PowerCycle"])
                .await
        })
    }

    fn query(&self) -> PowerFuture<'_, PowerState> {
        self.run("query power state", async {
            let (_, reply) = self.system().await?;
            self.power_state_of(&reply.body)
        })
    }

    fn set_boot_network_once(&self, efi: bool) -> PowerFuture<'_, BootOverride> {
        self.run("set one-time network boot", self.set_boot(efi))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_verifier_accepts_only_its_certificate() {
        // Only the DER's digest matters to the pin check, not what it says.
        let cert = CertificateDer::from(b"a certificate, only hashed here".to_vec());
        let pin: [u8; 32] = Sha256::digest(cert.as_ref()).into();
        let verifier = PinnedCertificate {
            pin,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        };
        let name = ServerName::try_from("bmc.example").expect("name");
        let verify = |c: &CertificateDer<'_>| {
            verifier.verify_server_cert(c, &[], &name, &[], UnixTime::now())
        };
        assert!(verify(&cert).is_ok());

        let other = CertificateDer::from(b"another certificate".to_vec());
        let err = verify(&other).expect_err("not the pinned certificate");
        let mismatch = pin_mismatch(&err).expect("a pin mismatch");
        let text = mismatch.to_string();
        let presented = hex(&Sha256::digest(other.as_ref()));
        assert!(text.contains(&presented), "{text}");
        assert!(text.contains(&hex(&pin)), "{text}");
        assert_eq!(presented.len(), 64);
        assert!(!verifier.supported_verify_schemes().is_empty());
    }

    #[test]
    fn read_back_policy() {
        let once = json!({"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once",
            "BootSourceOverrideMode": "UEFI"});
        let ok = judge_boot(&once, true, true, "https://bmc").unwrap();
        assert!(ok.warnings.is_empty());
        assert_eq!(ok.persistent, Some(false));

        // sushy-tools' fake driver: kept, but Continuous.
        let sushy = json!({"BootSourceOverrideTarget": "Pxe",
            "BootSourceOverrideEnabled": "Continuous", "BootSourceOverrideMode": "UEFI"});
        let warned = judge_boot(&sushy, true, true, "https://bmc").unwrap();
        assert_eq!(warned.persistent, Some(true));
        assert!(warned.warnings[0].contains("Continuous"));

        let dropped = json!({"BootSourceOverrideTarget": "Hdd",
            "BootSourceOverrideEnabled": "Continuous"});
        let err = judge_boot(&dropped, true, false, "https://bmc").unwrap_err();
        assert!(
            err.to_string()
                .contains("reads back BootSourceOverrideTarget Hdd"),
            "{err}"
        );

        let disabled = json!({"BootSourceOverrideTarget": "Pxe",
            "BootSourceOverrideEnabled": "Disabled"});
        assert!(judge_boot(&disabled, false, false, "https://bmc").is_err());
    }
}
