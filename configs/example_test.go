package configs

import (
	"bytes"
	"io/fs"
	"reflect"
	"testing"
	"time"
)

func TestExamplesValidate(t *testing.T) {
	isolateEnv(t)
	names, err := fs.Glob(Examples(), "*.yaml")
	if err != nil || len(names) < 2 {
		t.Fatalf("examples = %v, %v", names, err)
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			data, err := fs.ReadFile(Examples(), name)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Parse(name, data); err != nil {
				t.Fatalf("example does not validate:\n%v", err)
			}
		})
	}
}

func TestExampleRoles(t *testing.T) {
	isolateEnv(t)
	data, err := fs.ReadFile(Examples(), "config.yaml")
	if err != nil || !bytes.Equal(data, Example()) {
		t.Fatalf("Example() is not examples/config.yaml (%v)", err)
	}
	c, err := Parse("config.yaml", Example())
	if err != nil {
		t.Fatal(err)
	}
	if got := c.RoleNames(); !reflect.DeepEqual(got, []string{"agent-dev", "agent-proxied", "agent-readonly"}) {
		t.Fatalf("roles = %v", got)
	}

	ro := c.Roles["agent-readonly"]
	if ro.TTL.D() != 15*time.Minute || ro.MaxTTL.D() != time.Hour ||
		!reflect.DeepEqual(ro.Vault.Policies, []string{"agent-readonly"}) || len(ro.Vault.Secrets) != 1 {
		t.Errorf("agent-readonly = %+v %+v", ro, ro.Vault)
	}

	dev := c.Roles["agent-dev"]
	if dev.TTL.D() != 30*time.Minute || dev.MaxTTL.D() != 2*time.Hour ||
		!reflect.DeepEqual(dev.Vault.Policies, []string{"agent-dev"}) || len(dev.Vault.Secrets) != 2 {
		t.Fatalf("agent-dev = %+v %+v", dev, dev.Vault)
	}
	px := c.Roles["agent-proxied"]
	if px.DeliveryFor("vault") != DeliveryProxy || len(px.Inject) != 1 || px.Inject[0].Env != "ANTHROPIC_API_KEY" {
		t.Errorf("agent-proxied = %+v", px)
	}
	cert := dev.Vault.Secrets[1]
	if cert.Method != "write" || cert.Path != "pki/issue/agent-dev" || cert.Data["common_name"] != "agent.credbroker.local" {
		t.Errorf("agent-dev cert secret = %+v", cert)
	}
}
