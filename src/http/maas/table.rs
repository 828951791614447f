//! The face's route table: one entry per MAAS handler, each with its actions, their access and
//! the parameters they read. [`dispatch`](super::dispatch) routes by it and
//! [`describe`](super::describe) publishes it, so what a client is told and what it is served are
//! one list.

use axum::http::Method;
use futures_util::future::BoxFuture;

use super::{Ctx, Reply, describe, devices, files, machines, nodes, resources, settings};
use crate::http::Access;
use crate::http::api::catalogs::{Pools, Tags, Zones};

/// An action's code. A plain fn pointer so the table is a constant.
pub type Run = fn(Ctx) -> BoxFuture<'static, Reply>;

/// One parameter an action reads: its name and what it means. describe/ lists them the way
/// MAAS's docstrings do (`:param name: meaning`); the MAAS CLI accepts `key=value` arguments
/// only for actions whose description has such lines.
pub type Param = (&'static str, &'static str);

/// One action of a MAAS handler: RESTful (no op: GET read, POST create, PUT update, DELETE
/// delete) or named by its op.
pub struct Action {
    pub method: Method,
    pub op: Option<&'static str>,
    pub access: Access,
    pub doc: &'static str,
    pub params: &'static [Param],
    pub run: Run,
}

impl Action {
    /// The name describe/ gives the action (python-libmaas makes it a method name, the MAAS CLI
    /// a command).
    pub fn name(&self) -> &'static str {
        match self.op {
            Some(op) => op,
            None => match self.method {
                Method::GET => "read",
                Method::POST => "create",
                Method::PUT => "update",
                Method::DELETE => "delete",
                _ => "call",
            },
        }
    }
}

/// One MAAS handler: a path under [`PREFIX`](super::PREFIX) (placeholders in braces) and its
/// actions.
pub(crate) struct Resource {
    /// MAAS's handler class name; python-libmaas binds by it (MachinesHandler -> Machines), the
    /// MAAS CLI names its command after it (MachinesHandler -> `machines`).
    pub name: &'static str,
    pub path: &'static str,
    pub doc: &'static str,
    pub actions: &'static [Action],
}

macro_rules! act {
    ($method:ident, $op:expr, $access:ident, $doc:expr, $params:expr, $f:expr) => {
        Action {
            method: Method::$method,
            op: $op,
            access: Access::$access,
            doc: $doc,
            params: &$params,
            run: |c| Box::pin($f(c)),
        }
    };
    ($method:ident, $op:expr, $access:ident, $doc:expr, $f:expr) => {
        act!($method, $op, $access, $doc, [], $f)
    };
}

/// The filters of machine and node lists (MAAS's).
const NODE_FILTERS: [Param; 8] = [
    (
        "hostname",
        "Only nodes with this hostname (repeat for any of several).",
    ),
    (
        "id",
        "Only nodes with this system_id (repeat for any of several).",
    ),
    (
        "mac_address",
        "Only nodes with an interface of this MAC (repeatable).",
    ),
    ("domain", "Only nodes in this domain (repeatable)."),
    ("zone", "Only nodes in this zone."),
    ("pool", "Only machines in this resource pool."),
    (
        "tags",
        "Only nodes carrying all these tags (comma-separated or repeated).",
    ),
    (
        "agent_name",
        "Only machines allocated with this agent name.",
    ),
];

/// The face's route table. Access levels say only who may *call* an action, as the native API's
/// table does (adding, editing and deleting machines need an admin); whether a user may act on a
/// particular machine is the service's decision, so life-cycle actions are open to users here.
pub(crate) static RESOURCES: &[Resource] = &[
    Resource {
        name: "DescribeHandler",
        path: "describe/",
        doc: "This API's description, generated from its route table.",
        actions: &[act!(
            GET,
            None,
            Anonymous,
            "Describe the API.",
            describe::describe
        )],
    },
    Resource {
        name: "VersionHandler",
        path: "version/",
        doc: "Version and capabilities of this server.",
        actions: &[act!(
            GET,
            None,
            Anonymous,
            "Read the version and capabilities.",
            resources::version
        )],
    },
    Resource {
        name: "MachinesHandler",
        path: "machines/",
        doc: "Manage the collection of all the machines.",
        actions: &[
            act!(
                GET,
                None,
                User,
                "List the machines the caller may see.",
                NODE_FILTERS,
                machines::list
            ),
            act!(
                POST,
                None,
                Admin,
                "Add a machine.",
                [
                    (
                        "architecture",
                        "Architecture, e.g. amd64/generic (required)."
                    ),
                    (
                        "mac_addresses",
                        "MAC address of an interface (repeat for each; the first boots)."
                    ),
                    ("power_type", "ipmi, redfish, command or manual."),
                    (
                        "power_parameters",
                        "Power settings as a JSON object, or power_parameters_<key>=value."
                    ),
                    ("hostname", "Hostname (default: one is made up)."),
                    ("domain", "DNS domain (default maas)."),
                    ("zone", "Availability zone."),
                    ("pool", "Resource pool."),
                    ("description", "Free text."),
                    ("commission", "true to commission at once (default true)."),
                ],
                machines::create
            ),
            act!(
                POST,
                Some("allocate"),
                User,
                "Allocate a Ready machine matching the constraints.",
                [
                    ("name", "Hostname or FQDN of the machine wanted."),
                    ("system_id", "system_id of the machine wanted."),
                    ("arch", "Architecture, e.g. amd64 or amd64/generic."),
                    ("cpu_count", "At least this many logical CPUs."),
                    ("mem", "At least this much memory, MiB."),
                    (
                        "tags",
                        "Carrying all these tags (comma-separated or repeated)."
                    ),
                    ("not_tags", "Carrying none of these tags."),
                    ("zone", "In this zone."),
                    ("not_in_zone", "In none of these zones."),
                    ("pool", "In this resource pool."),
                    ("not_in_pool", "In none of these pools."),
                    (
                        "storage",
                        "Disks wanted: label:GB(tag,...),... (e.g. root:20,data:100(ssd))."
                    ),
                    (
                        "agent_name",
                        "Recorded with the allocation; machines read can filter by it."
                    ),
                    ("dry_run", "true to answer the match without allocating."),
                    ("comment", "Recorded in the machine's events."),
                ],
                machines::allocate
            ),
            act!(
                POST,
                Some("release"),
                User,
                "Release several machines.",
                [
                    (
                        "machines",
                        "system_id of a machine to release (repeat for each)."
                    ),
                    ("comment", "Recorded in the machines' events."),
                ],
                machines::release_many
            ),
            act!(
                GET,
                Some("power_parameters"),
                Admin,
                "Power parameters of several machines.",
                [("id", "system_id of a machine (repeat for each; none: all)."),],
                machines::power_parameters_many
            ),
            act!(
                GET,
                Some("list_allocated"),
                User,
                "Machines allocated to the caller.",
                machines::list_allocated
            ),
            act!(
                GET,
                Some("is_registered"),
                User,
                "Whether a MAC address belongs to a machine.",
                [("mac_address", "The MAC address (required)."),],
                machines::is_registered
            ),
        ],
    },
    Resource {
        name: "MachineHandler",
        path: "machines/{system_id}/",
        doc: "Manage an individual machine.",
        actions: &[
            act!(GET, None, User, "Read a machine.", machines::read),
            act!(
                PUT,
                None,
                Admin,
                "Update a machine.",
                [
                    ("hostname", "New hostname."),
                    ("domain", "New DNS domain."),
                    ("description", "New description (empty clears it)."),
                    ("zone", "Move to this zone."),
                    ("pool", "Move to this resource pool."),
                    (
                        "power_type",
                        "New power driver: ipmi, redfish, command or manual."
                    ),
                    ("architecture", "New architecture, e.g. amd64/generic."),
                    (
                        "power_parameters",
                        "New power settings (JSON object or power_parameters_<key>=value)."
                    ),
                ],
                machines::update
            ),
            act!(DELETE, None, Admin, "Delete a machine.", machines::delete),
            act!(
                POST,
                Some("deploy"),
                User,
                "Deploy an OS onto the machine's disk.",
                [
                    (
                        "distro_series",
                        "Image to deploy: its release or name (default: the default image)."
                    ),
                    ("osystem", "OS of the image."),
                    ("user_data", "cloud-init user data, base64."),
                    (
                        "hwe_kernel",
                        "Accepted for compatibility; images carry their own kernel."
                    ),
                    (
                        "agent_name",
                        "Recorded with the allocation when deploying an allocated machine."
                    ),
                    ("comment", "Recorded in the machine's events."),
                ],
                machines::deploy
            ),
            act!(
                POST,
                Some("release"),
                User,
                "Release the machine back to the pool.",
                [
                    (
                        "erase",
                        "true to erase the disks before the machine is Ready again."
                    ),
                    ("secure_erase", "true for the disks' own secure erase."),
                    (
                        "quick_erase",
                        "true to wipe only the start and end of each disk."
                    ),
                    ("force", "Accepted for compatibility."),
                    ("comment", "Recorded in the machine's events."),
                ],
                machines::release
            ),
            act!(
                POST,
                Some("commission"),
                Admin,
                "Commission the machine.",
                [
                    ("enable_ssh", "Accepted; the ramdisk has no SSH."),
                    ("skip_networking", "Accepted for compatibility."),
                    ("skip_storage", "Accepted for compatibility."),
                    ("skip_bmc_config", "Accepted for compatibility."),
                    (
                        "testing_scripts",
                        "Hardware tests to run after commissioning (none: skip)."
                    ),
                    ("comment", "Recorded in the machine's events."),
                ],
                machines::commission
            ),
            act!(
                POST,
                Some("abort"),
                User,
                "Abort the machine's current action.",
                [("comment", "Recorded in the machine's events."),],
                machines::abort
            ),
            act!(
                POST,
                Some("mark_broken"),
                User,
                "Mark the machine broken.",
                [
                    ("error_description", "Why it is broken."),
                    (
                        "comment",
                        "Why it is broken, if error_description is not given."
                    ),
                ],
                machines::mark_broken
            ),
            act!(
                POST,
                Some("mark_fixed"),
                Admin,
                "Mark a broken machine fixed.",
                [("comment", "Recorded in the machine's events."),],
                machines::mark_fixed
            ),
            act!(
                POST,
                Some("lock"),
                User,
                "Lock the machine against changes.",
                [("comment", "Recorded in the machine's events."),],
                machines::lock
            ),
            act!(
                POST,
                Some("unlock"),
                User,
                "Unlock the machine.",
                [("comment", "Recorded in the machine's events."),],
                machines::unlock
            ),
            act!(
                POST,
                Some("rescue_mode"),
                User,
                "Boot the rescue environment.",
                machines::rescue_mode
            ),
            act!(
                POST,
                Some("exit_rescue_mode"),
                User,
                "Leave rescue mode.",
                machines::exit_rescue_mode
            ),
            act!(
                POST,
                Some("power_on"),
                User,
                "Power the machine on.",
                machines::power_on
            ),
            act!(
                POST,
                Some("power_off"),
                User,
                "Power the machine off.",
                [("stop_mode", "soft (ACPI shutdown) or hard (default hard)."),],
                machines::power_off
            ),
            act!(
                GET,
                Some("query_power_state"),
                User,
                "The machine's power state, asked of its BMC.",
                machines::query_power_state
            ),
            act!(
                GET,
                Some("power_parameters"),
                Admin,
                "The machine's power parameters.",
                machines::power_parameters
            ),
            act!(
                POST,
                Some("set_owner_data"),
                User,
                "Set owner data.",
                [(
                    "key",
                    "Any name=value pair sets that key; an empty value deletes it."
                ),],
                machines::set_owner_data
            ),
            act!(
                GET,
                Some("details"),
                User,
                "The machine's commissioning output, BSON-encoded as MAAS encodes it.",
                nodes::details
            ),
        ],
    },
    Resource {
        name: "NodesHandler",
        path: "nodes/",
        doc: "Every node: machines, devices and this controller.",
        actions: &[act!(
            GET,
            None,
            User,
            "List the nodes the caller may see.",
            NODE_FILTERS,
            nodes::list
        )],
    },
    Resource {
        name: "NodeHandler",
        path: "nodes/{system_id}/",
        doc: "One node of any type.",
        actions: &[
            act!(GET, None, User, "Read a node.", nodes::read),
            act!(
                GET,
                Some("details"),
                User,
                "The node's commissioning output, BSON-encoded.",
                nodes::details
            ),
        ],
    },
    Resource {
        name: "DevicesHandler",
        path: "devices/",
        doc: "Devices: things on the rack's networks that rackbox does not deploy (BMCs, switches, containers).",
        actions: &[
            act!(
                GET,
                None,
                User,
                "List the devices the caller may see.",
                [
                    ("hostname", "Only devices with this hostname (repeatable)."),
                    ("id", "Only the device with this system_id (repeatable)."),
                    ("mac_address", "Only the device with this MAC (repeatable)."),
                    ("zone", "Only devices in this zone."),
                    ("domain", "Only devices in this domain (repeatable)."),
                ],
                devices::list
            ),
            act!(
                POST,
                None,
                User,
                "Record a device.",
                [
                    (
                        "mac_addresses",
                        "A MAC address of the device (repeat for each; required)."
                    ),
                    ("hostname", "Its hostname (default: one is made up)."),
                    ("domain", "DNS domain (default maas)."),
                    ("description", "Free text."),
                    ("parent", "system_id of the machine it belongs to."),
                    ("zone", "Availability zone."),
                ],
                devices::create
            ),
        ],
    },
    Resource {
        name: "DeviceHandler",
        path: "devices/{system_id}/",
        doc: "One device.",
        actions: &[
            act!(GET, None, User, "Read a device.", devices::read),
            act!(
                PUT,
                None,
                User,
                "Update a device (its owner or an admin).",
                [
                    ("hostname", "New hostname."),
                    ("domain", "New DNS domain."),
                    ("description", "New description."),
                    (
                        "mac_addresses",
                        "Its MAC addresses, all of them (repeat for each)."
                    ),
                    (
                        "parent",
                        "system_id of the machine it belongs to (empty: none)."
                    ),
                    ("zone", "New zone."),
                ],
                devices::update
            ),
            act!(
                DELETE,
                None,
                User,
                "Delete a device (its owner or an admin).",
                devices::delete
            ),
        ],
    },
    Resource {
        name: "RackControllersHandler",
        path: "rackcontrollers/",
        doc: "The rack controllers: this appliance, which serves the boot network.",
        actions: &[act!(
            GET,
            None,
            User,
            "List the rack controllers.",
            nodes::controllers
        )],
    },
    Resource {
        name: "RackControllerHandler",
        path: "rackcontrollers/{system_id}/",
        doc: "One rack controller.",
        actions: &[act!(
            GET,
            None,
            User,
            "Read the rack controller.",
            nodes::controller_read
        )],
    },
    Resource {
        name: "RegionControllersHandler",
        path: "regioncontrollers/",
        doc: "The region controllers: this appliance, which serves the API.",
        actions: &[act!(
            GET,
            None,
            User,
            "List the region controllers.",
            nodes::controllers
        )],
    },
    Resource {
        name: "RegionControllerHandler",
        path: "regioncontrollers/{system_id}/",
        doc: "One region controller.",
        actions: &[act!(
            GET,
            None,
            User,
            "Read the region controller.",
            nodes::controller_read
        )],
    },
    Resource {
        name: "NodeResultsHandler",
        path: "installation-results/",
        doc: "Commissioning and hardware test results of the machines.",
        actions: &[act!(
            GET,
            None,
            User,
            "List results.",
            [
                ("system_id", "Only results of this machine (repeatable)."),
                ("name", "Only results of this script (repeatable)."),
                ("result_type", "0 commissioning, 2 testing."),
            ],
            nodes::results
        )],
    },
    Resource {
        name: "EventsHandler",
        path: "events/",
        doc: "The machines' events.",
        actions: &[act!(
            GET,
            Some("query"),
            User,
            "Query events, newest first.",
            [
                (
                    "hostname",
                    "Only events of machines with this hostname (repeatable)."
                ),
                ("id", "Only events of this system_id (repeatable)."),
                (
                    "mac_address",
                    "Only events of the machine with this MAC (repeatable)."
                ),
                ("zone", "Only events of machines in this zone (repeatable)."),
                (
                    "agent_name",
                    "Only events of machines allocated with this agent name."
                ),
                (
                    "level",
                    "Lowest level shown: DEBUG, INFO, WARNING, ERROR, CRITICAL (default INFO)."
                ),
                (
                    "limit",
                    "At most this many events (default 100, at most 1000)."
                ),
                ("before", "Only events with an id below this one."),
                ("after", "Only events with an id above this one."),
                ("owner", "Only events of machines this user owns."),
            ],
            nodes::events
        )],
    },
    Resource {
        name: "InterfacesHandler",
        path: "nodes/{system_id}/interfaces/",
        doc: "A machine's network interfaces.",
        actions: &[act!(
            GET,
            None,
            User,
            "List the interfaces.",
            machines::interfaces
        )],
    },
    Resource {
        name: "InterfaceHandler",
        path: "nodes/{system_id}/interfaces/{id}/",
        doc: "One network interface.",
        actions: &[
            act!(GET, None, User, "Read the interface.", machines::interface),
            act!(
                POST,
                Some("link_subnet"),
                User,
                "Set how the interface comes up in the deployed OS.",
                [
                    (
                        "mode",
                        "AUTO (an address picked at deploy), STATIC (ip_address), DHCP or LINK_UP; required."
                    ),
                    (
                        "subnet",
                        "The boot subnet, by id or CIDR (AUTO and STATIC need one)."
                    ),
                    ("ip_address", "The address of a STATIC link."),
                    (
                        "default_gateway",
                        "Accepted; the default route goes on the first addressed interface whose subnet has a gateway."
                    ),
                ],
                machines::link_subnet
            ),
            act!(
                POST,
                Some("unlink_subnet"),
                User,
                "Remove the interface's link.",
                [("id", "The link's id (the interface has one)."),],
                machines::unlink_subnet
            ),
            act!(
                POST,
                Some("disconnect"),
                User,
                "Remove the interface's link.",
                machines::unlink_subnet
            ),
        ],
    },
    Resource {
        name: "BlockDevicesHandler",
        path: "nodes/{system_id}/blockdevices/",
        doc: "A machine's block devices.",
        actions: &[act!(
            GET,
            None,
            User,
            "List the block devices.",
            machines::block_devices
        )],
    },
    Resource {
        name: "BlockDeviceHandler",
        path: "nodes/{system_id}/blockdevices/{id}/",
        doc: "One block device.",
        actions: &[act!(
            GET,
            None,
            User,
            "Read the block device.",
            machines::block_device
        )],
    },
    Resource {
        name: "UsersHandler",
        path: "users/",
        doc: "Manage the user accounts.",
        actions: &[
            act!(
                GET,
                None,
                User,
                "List users (admins see all).",
                resources::users
            ),
            act!(
                POST,
                None,
                Admin,
                "Create a user.",
                [
                    ("username", "Login name (required)."),
                    ("email", "E-mail address."),
                    ("password", "Password (required)."),
                    ("is_superuser", "true for an admin."),
                ],
                resources::create_user
            ),
            act!(
                GET,
                Some("whoami"),
                User,
                "The logged-in user.",
                resources::whoami
            ),
        ],
    },
    Resource {
        name: "UserHandler",
        path: "users/{username}/",
        doc: "Manage one user account.",
        actions: &[
            act!(GET, None, User, "Read a user.", resources::user),
            act!(
                DELETE,
                None,
                Admin,
                "Delete a user.",
                [(
                    "transfer_resources_to",
                    "Accepted; a user who owns machines cannot be deleted."
                ),],
                resources::delete_user
            ),
        ],
    },
    Resource {
        name: "AccountHandler",
        path: "account/",
        doc: "The caller's API keys.",
        actions: &[
            act!(
                POST,
                Some("create_authorisation_token"),
                User,
                "Make a new API key.",
                [("name", "A name for the key."),],
                resources::create_authorisation_token
            ),
            act!(
                GET,
                Some("list_authorisation_tokens"),
                User,
                "List the caller's API keys.",
                resources::list_authorisation_tokens
            ),
        ],
    },
    Resource {
        name: "SSHKeysHandler",
        path: "account/prefs/sshkeys/",
        doc: "The caller's SSH public keys, installed on the machines the caller deploys.",
        actions: &[
            act!(
                GET,
                None,
                User,
                "List the caller's SSH keys.",
                resources::ssh_keys
            ),
            act!(
                POST,
                None,
                User,
                "Add an SSH public key.",
                [("key", "The public key, as in authorized_keys (required)."),],
                resources::add_ssh_key
            ),
        ],
    },
    Resource {
        name: "SSHKeyHandler",
        path: "account/prefs/sshkeys/{id}/",
        doc: "One of the caller's SSH keys.",
        actions: &[
            act!(GET, None, User, "Read the key.", resources::ssh_key),
            act!(
                DELETE,
                None,
                User,
                "Delete the key.",
                resources::delete_ssh_key
            ),
        ],
    },
    Resource {
        name: "ZonesHandler",
        path: "zones/",
        doc: "Manage availability zones.",
        actions: &[
            act!(
                GET,
                None,
                User,
                "List zones.",
                resources::catalog_list::<Zones>
            ),
            act!(
                POST,
                None,
                Admin,
                "Create a zone.",
                [
                    ("name", "The zone's name (required)."),
                    ("description", "Free text."),
                ],
                resources::catalog_create::<Zones>
            ),
        ],
    },
    Resource {
        name: "ZoneHandler",
        path: "zones/{name}/",
        doc: "Manage one availability zone.",
        actions: &[
            act!(
                GET,
                None,
                User,
                "Read a zone.",
                resources::catalog_read::<Zones>
            ),
            act!(
                PUT,
                None,
                Admin,
                "Change a zone's description.",
                [
                    ("name", "Its name, unchanged (rackbox does not rename)."),
                    ("description", "The new text.")
                ],
                resources::catalog_update::<Zones>
            ),
            act!(
                DELETE,
                None,
                Admin,
                "Delete a zone no machine is in.",
                resources::catalog_delete::<Zones>
            ),
        ],
    },
    Resource {
        name: "ResourcePoolsHandler",
        path: "resourcepools/",
        doc: "Manage resource pools.",
        actions: &[
            act!(
                GET,
                None,
                User,
                "List resource pools.",
                resources::catalog_list::<Pools>
            ),
            act!(
                POST,
                None,
                Admin,
                "Create a resource pool.",
                [
                    ("name", "The pool's name (required)."),
                    ("description", "Free text."),
                ],
                resources::catalog_create::<Pools>
            ),
        ],
    },
    Resource {
        name: "ResourcePoolHandler",
        path: "resourcepool/{id}/",
        doc: "Manage one resource pool.",
        actions: &[
            act!(
                GET,
                None,
                User,
                "Read a resource pool.",
                resources::catalog_read::<Pools>
            ),
            act!(
                PUT,
                None,
                Admin,
                "Change a resource pool's description.",
                [
                    ("name", "Its name, unchanged (rackbox does not rename)."),
                    ("description", "The new text.")
                ],
                resources::catalog_update::<Pools>
            ),
            act!(
                DELETE,
                None,
                Admin,
                "Delete a resource pool no machine is in.",
                resources::catalog_delete::<Pools>
            ),
        ],
    },
    Resource {
        name: "TagsHandler",
        path: "tags/",
        doc: "Manage tags.",
        actions: &[
            act!(
                GET,
                None,
                User,
                "List tags.",
                resources::catalog_list::<Tags>
            ),
            act!(
                POST,
                None,
                Admin,
                "Create a tag.",
                [
                    ("name", "The tag's name (required)."),
                    ("comment", "Free text."),
                    (
                        "definition",
                        "Refused: rackbox tags are given by hand, not by XPath."
                    ),
                ],
                resources::catalog_create::<Tags>
            ),
        ],
    },
    Resource {
        name: "TagHandler",
        path: "tags/{name}/",
        doc: "Manage one tag.",
        actions: &[
            act!(
                GET,
                None,
                User,
                "Read a tag.",
                resources::catalog_read::<Tags>
            ),
            act!(
                PUT,
                None,
                Admin,
                "Change a tag's comment.",
                [
                    ("name", "Its name, unchanged (rackbox does not rename)."),
                    ("comment", "The new text."),
                    (
                        "definition",
                        "Refused when not empty: rackbox tags are given by hand."
                    ),
                    (
                        "kernel_opts",
                        "Refused when not empty: rackbox tags carry no kernel options."
                    )
                ],
                resources::catalog_update::<Tags>
            ),
            act!(
                DELETE,
                None,
                Admin,
                "Delete a tag, taking it from the machines that carry it.",
                resources::tag_delete
            ),
            act!(
                GET,
                Some("machines"),
                User,
                "Machines carrying the tag.",
                resources::tag_machines
            ),
            act!(
                GET,
                Some("nodes"),
                User,
                "Nodes carrying the tag.",
                resources::tag_machines
            ),
            act!(
                POST,
                Some("update_nodes"),
                Admin,
                "Give the tag to machines, or take it away.",
                [
                    ("add", "system_id of a machine to tag (repeatable)."),
                    ("remove", "system_id of a machine to untag (repeatable)."),
                ],
                resources::tag_update_nodes
            ),
        ],
    },
    Resource {
        name: "DomainsHandler",
        path: "domains/",
        doc: "DNS domains of the machines.",
        actions: &[act!(GET, None, User, "List domains.", resources::domains)],
    },
    Resource {
        name: "DomainHandler",
        path: "domains/{id}/",
        doc: "One DNS domain.",
        actions: &[act!(GET, None, User, "Read a domain.", resources::domain)],
    },
    Resource {
        name: "DNSResourcesHandler",
        path: "dnsresources/",
        doc: "DNS resources (rackbox serves no DNS records yet: the list is empty).",
        actions: &[act!(
            GET,
            None,
            User,
            "List DNS resources.",
            [
                ("domain", "Only records of this domain."),
                ("name", "Only records of this name."),
                ("rrtype", "Only records of this type."),
            ],
            resources::dns_resources
        )],
    },
    Resource {
        name: "FabricsHandler",
        path: "fabrics/",
        doc: "Fabrics (rackbox has one, holding the boot network's VLAN).",
        actions: &[act!(GET, None, User, "List fabrics.", resources::fabrics)],
    },
    Resource {
        name: "FabricHandler",
        path: "fabrics/{id}/",
        doc: "One fabric.",
        actions: &[act!(GET, None, User, "Read a fabric.", resources::fabric)],
    },
    Resource {
        name: "VlansHandler",
        path: "fabrics/{fabric_id}/vlans/",
        doc: "VLANs of a fabric.",
        actions: &[act!(GET, None, User, "List VLANs.", resources::vlans)],
    },
    Resource {
        name: "SpacesHandler",
        path: "spaces/",
        doc: "Network spaces (rackbox models none).",
        actions: &[act!(GET, None, User, "List spaces.", resources::spaces)],
    },
    Resource {
        name: "SubnetsHandler",
        path: "subnets/",
        doc: "The boot network's subnets.",
        actions: &[act!(GET, None, User, "List subnets.", resources::subnets)],
    },
    Resource {
        name: "IPRangesHandler",
        path: "ipranges/",
        doc: "The boot subnets' dynamic (DHCP pool) and reserved ranges: the configuration file's and those added here.",
        actions: &[
            act!(GET, None, User, "List IP ranges.", resources::ip_ranges),
            act!(
                POST,
                None,
                User,
                "Add an IP range (dynamic: admins; refused when it overlaps another).",
                [
                    (
                        "type",
                        "dynamic (joins the DHCP pool at once) or reserved (never handed out); required."
                    ),
                    ("start_ip", "First address (required)."),
                    ("end_ip", "Last address (required)."),
                    (
                        "subnet",
                        "The boot subnet, by id or CIDR (default: the one holding start_ip)."
                    ),
                    ("comment", "Why the range exists."),
                ],
                resources::create_ip_range
            ),
        ],
    },
    Resource {
        name: "IPRangeHandler",
        path: "ipranges/{id}/",
        doc: "One IP range.",
        actions: &[
            act!(GET, None, User, "Read an IP range.", resources::ip_range),
            act!(
                PUT,
                None,
                User,
                "Change an IP range added through the API.",
                [
                    ("start_ip", "New first address."),
                    ("end_ip", "New last address."),
                    ("comment", "New comment."),
                ],
                resources::update_ip_range
            ),
            act!(
                DELETE,
                None,
                User,
                "Delete an IP range added through the API.",
                resources::delete_ip_range
            ),
        ],
    },
    Resource {
        name: "StaticRoutesHandler",
        path: "static-routes/",
        doc: "Static routes: machines deployed on a boot subnet reach another network through a gateway (written into their network-config).",
        actions: &[
            act!(
                GET,
                None,
                User,
                "List static routes.",
                resources::static_routes
            ),
            act!(
                POST,
                None,
                Admin,
                "Add a static route.",
                [
                    (
                        "source",
                        "The boot subnet whose machines get the route, by id or CIDR (required)."
                    ),
                    (
                        "destination",
                        "The network it leads to: a boot subnet's id, or any CIDR (required)."
                    ),
                    (
                        "gateway_ip",
                        "The next hop, an address of the source subnet (required)."
                    ),
                    ("metric", "The route's metric (default 0)."),
                ],
                resources::create_static_route
            ),
        ],
    },
    Resource {
        name: "StaticRouteHandler",
        path: "static-routes/{id}/",
        doc: "One static route.",
        actions: &[
            act!(
                GET,
                None,
                User,
                "Read a static route.",
                resources::static_route
            ),
            act!(
                DELETE,
                None,
                Admin,
                "Delete a static route (deployed machines keep it until redeployed).",
                resources::delete_static_route
            ),
        ],
    },
    Resource {
        name: "BootResourcesHandler",
        path: "boot-resources/",
        doc: "Deployable images, from the image cache.",
        actions: &[act!(
            GET,
            None,
            User,
            "List boot resources.",
            [(
                "type",
                "Only resources of this type (rackbox's are all uploaded)."
            ),],
            resources::boot_resources
        )],
    },
    Resource {
        name: "BootSourcesHandler",
        path: "boot-sources/",
        doc: "Where images come from: the mirror manifests the image cache synced from.",
        actions: &[act!(
            GET,
            None,
            User,
            "List boot sources.",
            resources::boot_sources
        )],
    },
    Resource {
        name: "BootSourceHandler",
        path: "boot-sources/{id}/",
        doc: "One boot source.",
        actions: &[act!(
            GET,
            None,
            User,
            "Read a boot source.",
            resources::boot_source
        )],
    },
    Resource {
        name: "FilesHandler",
        path: "files/",
        doc: "Files stored for the caller (Juju keeps its tools and state here).",
        actions: &[
            act!(
                GET,
                None,
                User,
                "List files.",
                [("prefix", "Only files whose name starts with this.")],
                files::list
            ),
            act!(
                POST,
                None,
                User,
                "Add a file.",
                [
                    ("filename", "Name to store it under (required)."),
                    ("file", "The content, as a multipart file (required)."),
                ],
                files::add
            ),
            act!(
                POST,
                Some("add"),
                User,
                "Add a file.",
                [
                    ("filename", "Name to store it under (required)."),
                    ("file", "The content, as a multipart file (required)."),
                ],
                files::add
            ),
            act!(
                GET,
                Some("get"),
                User,
                "Read a file's content.",
                [("filename", "The file's name (required).")],
                files::get
            ),
            act!(
                GET,
                Some("get_by_key"),
                Anonymous,
                "Read a file's content by its key, without credentials.",
                [("key", "The file's key (required)."),],
                files::get_by_key
            ),
            act!(
                POST,
                Some("delete"),
                User,
                "Delete a file.",
                [("filename", "The file's name (required).")],
                files::delete_by_param
            ),
        ],
    },
    Resource {
        name: "FileHandler",
        path: "files/{filename}/",
        doc: "One stored file.",
        actions: &[
            act!(
                GET,
                None,
                User,
                "Read a file (content base64).",
                files::read
            ),
            act!(DELETE, None, User, "Delete a file.", files::delete),
        ],
    },
    Resource {
        name: "MaasHandler",
        path: "maas/",
        doc: "Server-wide settings.",
        actions: &[
            act!(
                GET,
                Some("get_config"),
                User,
                "Read a setting.",
                [("name", settings::NAMES_DOC),],
                settings::get_config
            ),
            act!(
                POST,
                Some("set_config"),
                Admin,
                "Change a setting.",
                [("name", settings::NAMES_DOC), ("value", "The new value."),],
                settings::set_config
            ),
        ],
    },
];
