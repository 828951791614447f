// The calls Juju's MAAS provider makes at bootstrap and when it adds and releases a machine
// (juju/juju provider/maas: environ.go Bootstrap, StartInstance, acquireNode,
// waitForNodeDeployment, StopInstances), replayed with the same parameters through gomaasapi's
// controller interface, the library Juju uses (Debian's golang-github-juju-gomaasapi-dev), so
// every answer is decoded and type-checked exactly as Juju's client does it.
//
// Driven by tests/maas_juju.rs in two phases, because the machine's agent is played between them:
//
//	juju deploy  URL KEY MODEL   connect, read boot resources, zones, spaces, allocate, deploy,
//	                             read domains, set owner data; prints SYSTEM_ID= and MAC=
//	juju release URL KEY MODEL   wait for Deployed, read it as the instance poller does,
//	                             release, and the teardown's file calls
//
// Each step prints "ok: <what>"; a failure prints "FAILED: <why>" and exits 1.
package main

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/juju/gomaasapi"
)

func fail(format string, args ...interface{}) {
	fmt.Printf("FAILED: "+format+"\n", args...)
	os.Exit(1)
}

func ok(format string, args ...interface{}) {
	fmt.Printf("ok: "+format+"\n", args...)
}

// userData is what Juju's MAAS renderer sends: base64 of gzipped cloud-config.
func userData() string {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write([]byte("#cloud-config\nruncmd:\n- echo juju-was-here\n"))
	w.Close()
	return base64.StdEncoding.EncodeToString(buf.Bytes())
}

func connect(url, key string) gomaasapi.Controller {
	c, err := gomaasapi.NewController(gomaasapi.ControllerArgs{BaseURL: url, APIKey: key})
	if err != nil {
		fail("connect (version/ and users/?op=whoami): %v", err)
	}
	return c
}

func deploy(c gomaasapi.Controller, model string) {
	resources, err := c.BootResources()
	if err != nil || len(resources) == 0 {
		fail("boot-resources: %v (%d resources)", err, len(resources))
	}
	arches := map[string]bool{}
	for _, r := range resources {
		arches[strings.Split(r.Architecture(), "/")[0]] = true
	}
	if !arches["amd64"] {
		fail("no amd64 boot resource: %v", arches)
	}
	ok("boot resources give the architectures (%v)", arches)

	zones, err := c.Zones()
	if err != nil {
		fail("zones: %v", err)
	}
	names := []string{}
	for _, z := range zones {
		names = append(names, z.Name())
	}
	if !strings.Contains(strings.Join(names, ","), "default") {
		fail("zones lack default: %v", names)
	}
	ok("zones %v", names)

	if _, err := c.Spaces(); err != nil {
		fail("spaces: %v", err)
	}
	ok("spaces")

	// What acquireNode sends for `juju add-machine --constraints "cores=2 mem=2G tags=juju
	// root-disk=8G zone=default"`.
	args := gomaasapi.AllocateMachineArgs{
		AgentName:   model,
		MinCPUCount: 2,
		MinMemory:   2048,
		Tags:        []string{"juju"},
		NotTags:     []string{"broken"},
		Zone:        "default",
		Storage:     []gomaasapi.StorageSpec{{Label: "root", Size: 8}},
	}
	if _, _, err := c.AllocateMachine(gomaasapi.AllocateMachineArgs{AgentName: model, MinCPUCount: 999}); !gomaasapi.IsNoMatchError(err) {
		fail("an impossible allocation must be a NoMatchError (409), got %v", err)
	}
	ok("an impossible allocation is NoMatch (Juju tries another zone)")
	m, matches, err := c.AllocateMachine(args)
	if err != nil {
		fail("allocate: %v", err)
	}
	if m.StatusName() != "Allocated" || m.CPUCount() < 2 || m.Memory() < 2048 {
		fail("allocated %s is %s with %d CPUs, %d MiB", m.SystemID(), m.StatusName(), m.CPUCount(), m.Memory())
	}
	if root := matches.Storage["root"]; len(root) != 1 || root[0].Size() < 8_000_000_000 {
		fail("constraints_by_type.storage.root: %v", matches.Storage)
	}
	ok("allocate %s (%s, %s) with its root disk matched", m.SystemID(), m.Hostname(), m.Architecture())

	if _, err := c.Spaces(); err != nil {
		fail("spaces again: %v", err)
	}
	if err := m.Start(gomaasapi.StartArgs{UserData: userData(), DistroSeries: "bookworm"}); err != nil {
		fail("deploy: %v", err)
	}
	if m.StatusName() != "Deploying" {
		fail("after deploy the machine is %q, not Deploying", m.StatusName())
	}
	ok("deploy with gzipped user data and distro_series: Deploying")

	domains, err := c.Domains()
	if err != nil || len(domains) == 0 {
		fail("domains: %v", err)
	}
	ok("domains (%s)", domains[0].Name())

	owner, isOwner := m.(gomaasapi.OwnerDataHolder)
	if !isOwner {
		fail("the machine holds no owner data")
	}
	err = owner.SetOwnerData(map[string]string{
		"juju-model-uuid":      model,
		"juju-controller-uuid": model,
		"juju-is-controller":   "true",
	})
	if err != nil {
		fail("set_owner_data: %v", err)
	}
	ok("set owner data")
	boot := m.BootInterface()
	if boot == nil {
		fail("no boot interface")
	}
	fmt.Printf("SYSTEM_ID=%s\nMAC=%s\n", m.SystemID(), boot.MACAddress())
}

func release(c gomaasapi.Controller, model string) {
	// waitForNodeDeployment polls machines/?agent_name=&id= until Deployed.
	var m gomaasapi.Machine
	for i := 0; ; i++ {
		list, err := c.Machines(gomaasapi.MachinesArgs{AgentName: model})
		if err != nil {
			fail("machines by agent_name: %v", err)
		}
		if len(list) != 1 {
			fail("agent %s owns %d machines", model, len(list))
		}
		m = list[0]
		if m.StatusName() == "Deployed" {
			break
		}
		if m.StatusName() == "Failed deployment" || i > 100 {
			fail("the machine is %s: %s", m.StatusName(), m.StatusMessage())
		}
		time.Sleep(100 * time.Millisecond)
	}
	again, err := c.Machines(gomaasapi.MachinesArgs{AgentName: model, SystemIDs: []string{m.SystemID()}})
	if err != nil || len(again) != 1 {
		fail("machines by agent_name and id: %v (%d)", err, len(again))
	}
	ok("the machine is Deployed (%s)", m.OperatingSystem()+"/"+m.DistroSeries())
	if data, isOwner := m.(gomaasapi.OwnerDataHolder); !isOwner || data.OwnerData()["juju-is-controller"] != "true" {
		fail("owner data lost")
	}
	if others, err := c.Machines(gomaasapi.MachinesArgs{AgentName: "another-model"}); err != nil || len(others) != 0 {
		fail("another model sees %d machines (%v)", len(others), err)
	}
	// ControllerInstances reads every machine and filters on owner data.
	all, err := c.Machines(gomaasapi.MachinesArgs{})
	if err != nil || len(all) == 0 {
		fail("all machines: %v", err)
	}
	ok("instance poller reads: owner data kept, agent_name filters")
	if len(m.InterfaceSet()) == 0 || len(m.BlockDevices()) == 0 {
		fail("interfaces %d, block devices %d", len(m.InterfaceSet()), len(m.BlockDevices()))
	}
	routes, err := c.StaticRoutes()
	if err != nil || len(routes) != 0 {
		fail("static-routes: %v (%d)", err, len(routes))
	}
	ok("interfaces, block devices, static routes")

	err = c.ReleaseMachines(gomaasapi.ReleaseMachinesArgs{
		SystemIDs: []string{m.SystemID()},
		Comment:   "Released by Juju MAAS provider",
	})
	if err != nil {
		fail("release: %v", err)
	}
	ok("release")
	if left, err := c.Machines(gomaasapi.MachinesArgs{AgentName: model}); err != nil || len(left) != 0 {
		fail("after release the agent still owns %d machines (%v)", len(left), err)
	}
	ok("after release the model owns no machine")
	if _, err := c.GetFile(model + "-provider-state"); !gomaasapi.IsNoMatchError(err) {
		fail("the provider-state file must be NoMatch (404), got %v", err)
	}
	files, err := c.Files(model + "-")
	if err != nil || len(files) != 0 {
		fail("files by prefix: %v (%d)", err, len(files))
	}
	ok("teardown: no provider state, no files")
}

func main() {
	if len(os.Args) != 5 {
		fail("usage: juju deploy|release URL KEY MODEL")
	}
	c := connect(os.Args[2], os.Args[3])
	ok("connected: API %v", c.Capabilities().SortedValues())
	switch os.Args[1] {
	case "deploy":
		deploy(c, os.Args[4])
	case "release":
		release(c, os.Args[4])
	default:
		fail("unknown phase %q", os.Args[1])
	}
}
