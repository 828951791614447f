"""sushy-tools' Redfish emulator, plus the one resource of a real BMC that it lacks.

A BMC's Manager resource links to the manager's own network interfaces
(Managers/<id>/EthernetInterfaces, DMTF Redfish schema EthernetInterface): the
Redfish host interface on the host's side, and the management port with the
address the rest of the network reaches the BMC at. MAAS's commissioning, and
rackbox's, read that address through the host interface. sushy-tools 2.2 has
no such resource, so this launcher adds it, read from the emulator's config:

    SUSHY_EMULATOR_MANAGER_NICS = [
        {"Id": "hostif", "Address": "169.254.95.118"},
        {"Id": "mgmt", "Address": "192.0.2.31"},
    ]

Everything else (systems, managers, power, boot override, authentication,
TLS) is sushy-tools as released. Run it with the emulator's arguments.
"""

import re
import sys

import flask

from sushy_tools.emulator import main as emulator
from sushy_tools.emulator import api_utils

app = emulator.app
MANAGER = re.compile(r"^/redfish/v1/Managers/([^/]+)/?$")


def _nics():
    return app.config.get("SUSHY_EMULATOR_MANAGER_NICS", [])


def _nic_doc(identity, nic):
    return {
        "@odata.type": "#EthernetInterface.v1_6_0.EthernetInterface",
        "@odata.id": "/redfish/v1/Managers/%s/EthernetInterfaces/%s"
        % (identity, nic["Id"]),
        "Id": nic["Id"],
        "Name": "Manager NIC %s" % nic["Id"],
        "InterfaceEnabled": nic.get("Enabled", True),
        "IPv4Addresses": [
            {
                "Address": nic["Address"],
                "SubnetMask": nic.get("SubnetMask", "255.255.255.0"),
                "AddressOrigin": "Static",
            }
        ],
    }


@app.route("/redfish/v1/Managers/<identity>/EthernetInterfaces")
@api_utils.returns_json
def manager_nic_collection(identity):
    uuid = app.managers.get_manager(identity)["UUID"]
    return flask.json.dumps(
        {
            "@odata.type": "#EthernetInterfaceCollection.EthernetInterfaceCollection",
            "@odata.id": "/redfish/v1/Managers/%s/EthernetInterfaces" % uuid,
            "Name": "Manager Ethernet Interfaces",
            "Members@odata.count": len(_nics()),
            "Members": [
                {
                    "@odata.id": "/redfish/v1/Managers/%s/EthernetInterfaces/%s"
                    % (uuid, n["Id"])
                }
                for n in _nics()
            ],
        }
    )


@app.route("/redfish/v1/Managers/<identity>/EthernetInterfaces/<nic_id>")
@api_utils.returns_json
def manager_nic(identity, nic_id):
    uuid = app.managers.get_manager(identity)["UUID"]
    for nic in _nics():
        if nic["Id"] == nic_id:
            return flask.json.dumps(_nic_doc(uuid, nic))
    return flask.json.dumps({"error": "no such interface"}), 404


@app.after_request
def link_manager_nics(response):
    """The Manager resource links to its EthernetInterfaces, as a BMC's does."""
    match = MANAGER.match(flask.request.path)
    if (
        match
        and flask.request.method == "GET"
        and response.status_code == 200
        and response.is_json
    ):
        doc = response.get_json()
        doc["EthernetInterfaces"] = {
            "@odata.id": "/redfish/v1/Managers/%s/EthernetInterfaces" % doc.get("Id")
        }
        response.set_data(flask.json.dumps(doc))
    return response


if __name__ == "__main__":
    sys.exit(emulator.main())
