//! Network boot over HTTP, and the agent's endpoints: the per-machine iPXE script (what the
//! machine's status says it boots), and `/api/agent/v1/...`, which the agent in the ephemeral
//! environment calls with its per-boot token. These routes authenticate on their own (the boot
//! script is anonymous: firmware has no credentials; the agent has its boot token).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::extract::{JsonBody, limited_json};
use super::images::Peer;
use crate::model::agent_wire::{
    Complete, Deployed, Enlisted, Fail, PREFIX, Progress, Reported, Task, path,
};
use crate::model::timeline::{ScriptPlan, Step};
use crate::model::{ENLIST_KEY_HEADER, Inventory, Machine, Status};
use crate::service::{BootPlan, ServiceError};
use axum::extract::{ConnectInfo, Extension, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

/// Boot resource names the ephemeral environment is stored under (per architecture).
pub(crate) const KERNEL: &str = "vmlinuz";
pub(crate) const INITRD: &str = "initrd.img";

/// Kernel parameters every ephemeral boot gets: consoles for people and for the lab's serial log.
const KERNEL_PARAMS: &str = "console=tty0 console=ttyS0,115200n8 panic=30";

/// The boot and agent routes. `/enlist` and `/inventory` read their bodies themselves, up to
/// `lifecycle.enlist_max_inventory_kib`; the other agent calls have axum's default limit (2 MiB).
pub fn router() -> Router<AppState> {
    let agent = |call: &str| format!("{PREFIX}{call}");
    Router::new()
        .route("/boot/{file}", get(boot_script))
        .route(&agent(path::TASK), get(task))
        .route(&agent(path::INVENTORY), post(inventory))
        .route(&agent(path::PROGRESS), post(progress))
        .route(&agent(path::COMPLETE), post(complete))
        .route(&agent(path::FAIL), post(fail))
        .route(&agent(path::DEPLOYED), post(deployed))
        .route(&agent(path::ENLIST), post(enlist))
}

/// The iPXE script that boots the ephemeral environment.
pub(crate) fn ephemeral_script(base: &str, arch: &str, params: &str, note: &str) -> String {
    format!(
        "#!ipxe\n\
         # rackbox: {note}\n\
         :retry\n\
         kernel {base}/boot-resources/{arch}/{KERNEL} initrd={INITRD} {KERNEL_PARAMS} {params} BOOTIF=01-${{net0/mac:hexhyp}} || goto fail\n\
         initrd --name {INITRD} {base}/boot-resources/{arch}/{INITRD} || goto fail\n\
         boot || goto fail\n\
         :fail\n\
         echo rackbox: network boot failed; trying again in 5 seconds\n\
         sleep 5\n\
         goto retry\n"
    )
}

/// The iPXE script that boots the local disk: BIOS hands over to the first disk; UEFI leaves
/// iPXE with an error status (`exit 1`), which is what makes UEFI firmware try its next boot
/// entry: a plain `exit` reports success, and firmware such as OVMF then opens its setup screen.
pub(crate) fn local_disk_script(note: &str) -> String {
    format!(
        "#!ipxe\n\
         # rackbox: {note}\n\
         iseq ${{platform}} efi && goto efi ||\n\
         echo rackbox: booting from the local disk\n\
         sanboot --no-describe --drive 0x80 || goto efi\n\
         :efi\n\
         echo rackbox: leaving iPXE so the firmware boots the next entry\n\
         exit 1\n"
    )
}

fn ipxe(script: String) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        script,
    )
        .into_response()
}

/// `GET /boot/<mac>.ipxe`: the script for the machine with that MAC (lower-case, colons; dashes
/// are accepted too).
/// Any other name is a boot loader (UEFI HTTP boot clients are sent to `/boot/<loader>`).
async fn boot_script(
    State(s): State<AppState>,
    Path(file): Path<String>,
    peer: Peer,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let Some(mac) = file.strip_suffix(".ipxe") else {
        let arch = "amd64".to_string();
        return Ok(super::images::download_boot(State(s), Path((arch, file)), peer, headers).await);
    };
    let base = s.public_url.to_string();
    let plan = s.service.boot_plan(mac).await?;
    tracing::info!(%mac, plan = plan.describe(), "iPXE script served");
    let told = match &plan {
        BootPlan::Ephemeral { .. } => ScriptPlan::Ephemeral,
        BootPlan::LocalDisk { .. } => ScriptPlan::LocalDisk,
        BootPlan::Enlist => ScriptPlan::Enlist,
        BootPlan::Ignore => ScriptPlan::Ignore,
    };
    s.service
        .boot_step_script(mac, peer_ip(&peer), Step::IpxeScript { plan: told });
    let script = match plan {
        BootPlan::Ephemeral { system_id, token } => {
            let arch = s
                .service
                .machine(&crate::service::Principal::system(), &system_id)
                .map(|m| base_arch(&m))
                .unwrap_or_else(|_| "amd64".into());
            let params =
                format!("rackbox.url={base} rackbox.token={token} rackbox.system_id={system_id}");
            ephemeral_script(
                &base,
                &arch,
                &params,
                &format!("machine {system_id}: ephemeral environment"),
            )
        }
        BootPlan::Enlist => ephemeral_script(
            &base,
            "amd64",
            &format!("rackbox.url={base} rackbox.enlist=1"),
            "unknown machine: enlistment",
        ),
        BootPlan::LocalDisk { system_id } => {
            local_disk_script(&format!("machine {system_id}: local disk"))
        }
        BootPlan::Ignore => local_disk_script("unknown machine and enlistment is off: local disk"),
    };
    Ok(ipxe(script))
}

fn base_arch(m: &Machine) -> String {
    m.architecture
        .split('/')
        .next()
        .unwrap_or("amd64")
        .to_string()
}

/// The machine whose boot token the request carries.
fn agent(s: &AppState, headers: &HeaderMap) -> ApiResult<Machine> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError::unauthorized(
                "the agent must send its boot token (Authorization: Bearer <token>)",
            )
        })?;
    Ok(s.service.agent_machine(token.trim())?)
}

fn bearer(headers: &HeaderMap) -> String {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The address a request came from, when the server recorded it.
fn peer_ip(peer: &Peer) -> Option<IpAddr> {
    peer.as_ref().map(|Extension(ConnectInfo(addr))| addr.ip())
}

/// The name a task goes by on the wire (`commission`, `deploy`, ...), for the boot timeline.
fn task_name(task: &Task) -> String {
    serde_json::to_value(task)
        .ok()
        .and_then(|v| v.get("task").and_then(|t| t.as_str()).map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

async fn task(State(s): State<AppState>, peer: Peer, headers: HeaderMap) -> ApiResult<Json<Task>> {
    let m = agent(&s, &headers)?;
    let task = s
        .service
        .agent_task(&m, &bearer(&headers), &s.public_url)
        .await?;
    let step = Step::AgentTask {
        task: task_name(&task),
    };
    s.service.boot_step_of(&m, peer_ip(&peer), step);
    Ok(Json(task))
}

/// The largest inventory `/enlist` and `/inventory` take.
fn max_inventory(s: &AppState) -> usize {
    s.service.enlist_options().max_inventory_bytes
}

/// What a 413 for an inventory says.
fn inventory_too_large(s: &AppState) -> String {
    format!(
        "the inventory is larger than {} KiB, the most rackbox takes \
         (lifecycle.enlist_max_inventory_kib)",
        s.service.enlist_options().max_inventory_bytes / 1024
    )
}

/// Reads an inventory body, up to `lifecycle.enlist_max_inventory_kib` (413 beyond).
async fn read_inventory(s: &AppState, req: Request) -> Result<Inventory, ApiError> {
    let doc: serde_json::Value =
        limited_json(req, max_inventory(s), || inventory_too_large(s)).await?;
    serde_json::from_value(doc)
        .map_err(|e| ApiError::bad_request(format!("inventory does not have rackbox's shape: {e}")))
}

async fn inventory(State(s): State<AppState>, req: Request) -> ApiResult<StatusCode> {
    let m = agent(&s, req.headers())?;
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let inv = read_inventory(&s, req).await?;
    s.service.agent_inventory(&m, inv).await?;
    s.service.boot_step_of(&m, peer, Step::Inventory);
    Ok(StatusCode::NO_CONTENT)
}

async fn progress(
    State(s): State<AppState>,
    headers: HeaderMap,
    JsonBody(p): JsonBody<Progress>,
) -> ApiResult<StatusCode> {
    let m = agent(&s, &headers)?;
    s.service
        .agent_progress(&m, &p.message, p.percent, p.bytes)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Where a report took the machine.
fn reported(m: &Machine) -> Json<Reported> {
    Json(Reported {
        status: m.status.key().to_string(),
    })
}

async fn complete(
    State(s): State<AppState>,
    peer: Peer,
    headers: HeaderMap,
    JsonBody(c): JsonBody<Complete>,
) -> ApiResult<Json<Reported>> {
    let before = agent(&s, &headers)?;
    let m = s
        .service
        .agent_complete(&before, c.message, c.results)
        .await?;
    // A deploy's first report is the image on disk; the machine reboots into it next.
    let step = if before.status == Status::Deploying && !before.deploy_written {
        Step::ImageWritten
    } else {
        Step::AgentComplete {
            status: before.status.name().to_string(),
        }
    };
    s.service.boot_step_of(&m, peer_ip(&peer), step);
    Ok(reported(&m))
}

async fn fail(
    State(s): State<AppState>,
    peer: Peer,
    headers: HeaderMap,
    JsonBody(f): JsonBody<Fail>,
) -> ApiResult<Json<Reported>> {
    let m = agent(&s, &headers)?;
    let reason = f.reason.clone();
    let m = s.service.agent_fail(&m, f.reason, f.results).await?;
    s.service
        .boot_step_of(&m, peer_ip(&peer), Step::AgentFailed { reason });
    Ok(reported(&m))
}

async fn deployed(
    State(s): State<AppState>,
    peer: Peer,
    headers: HeaderMap,
    JsonBody(d): JsonBody<Deployed>,
) -> ApiResult<Json<Reported>> {
    let m = agent(&s, &headers)?;
    let m = s.service.deployed_report(&m, d.message).await?;
    s.service
        .boot_step_of(&m, peer_ip(&peer), Step::OsReportedIn);
    Ok(reported(&m))
}

/// `POST /enlist`, anonymous: the source's rate is counted before the body is read, the body
/// is bounded, and the service refuses known MACs (see `service/enlist.rs`). A 429 carries
/// `Retry-After`.
async fn enlist(State(s): State<AppState>, req: Request) -> Response {
    match enlist_inner(&s, req).await {
        Ok(answer) => answer.into_response(),
        Err(e) => {
            let retry_after = match &e {
                EnlistError::Service(ServiceError::RateLimited {
                    retry_after_secs, ..
                }) => Some(*retry_after_secs),
                _ => None,
            };
            let mut resp = match e {
                EnlistError::Service(e) => ApiError::from(e).into_response(),
                EnlistError::Api(e) => e.into_response(),
            };
            if let Some(secs) = retry_after
                && let Ok(v) = header::HeaderValue::from_str(&secs.to_string())
            {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            resp
        }
    }
}

/// Why `/enlist` was refused: by the service, or by the HTTP face (body, header).
enum EnlistError {
    Service(ServiceError),
    Api(ApiError),
}

impl From<ServiceError> for EnlistError {
    fn from(e: ServiceError) -> Self {
        EnlistError::Service(e)
    }
}

impl From<ApiError> for EnlistError {
    fn from(e: ApiError) -> Self {
        EnlistError::Api(e)
    }
}

async fn enlist_inner(s: &AppState, req: Request) -> Result<Json<Enlisted>, EnlistError> {
    // Without connection info (a router served without it) every caller shares one bucket.
    let source = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    s.service.admit_enlistment(source)?;
    let key = match req.headers().get(ENLIST_KEY_HEADER) {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| {
                    ApiError::bad_request(format!("the {ENLIST_KEY_HEADER} header is not ASCII"))
                })?
                .trim()
                .to_string(),
        ),
        None => None,
    };
    let inv = read_inventory(s, req).await?;
    let (m, token) = s.service.enlist(inv, key.as_deref()).await?;
    s.service.boot_step_of(&m, Some(source), Step::Inventory);
    Ok(Json(Enlisted {
        system_id: m.system_id,
        token,
    }))
}
