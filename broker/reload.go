package broker

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	"github.com/credbroker/credbroker/configs"
)

// EvConfigReload records a reload of the config (SIGHUP): Reason starts
// with "applied" and names what changed, or with "rejected"; Error then
// says why (the validation errors, or the keys that need a restart). It
// names keys and roles, never a value.
const EvConfigReload = "config.reload"

// ErrReloadRejected is returned (wrapped) by Reload when the new config is
// not applied: the running config stays.
var ErrReloadRejected = errors.New("config reload rejected")

// ReloadResult is what an applied reload changed.
type ReloadResult struct {
	// Added, Changed and Removed are role names, sorted.
	Added   []string `json:"added"`
	Changed []string `json:"changed"`
	Removed []string `json:"removed"`
	// AdminUIDs is set when broker.admin_uids changed.
	AdminUIDs bool `json:"admin_uids_changed"`
}

// String describes the change for the log and the audit record.
func (r ReloadResult) String() string {
	var parts []string
	for _, p := range []struct {
		what  string
		roles []string
	}{{"roles added", r.Added}, {"roles changed", r.Changed}, {"roles removed", r.Removed}} {
		if len(p.roles) > 0 {
			parts = append(parts, p.what+": "+strings.Join(p.roles, ", "))
		}
	}
	if r.AdminUIDs {
		parts = append(parts, "broker.admin_uids changed")
	}
	if len(parts) == 0 {
		return "no change"
	}
	return strings.Join(parts, "; ")
}

// Config returns the running config: the one the broker started with, or
// the last one a reload applied. The caller must not modify it.
func (b *Broker) Config() *configs.Config { return b.config() }

// Reload re-reads the config with load (the daemon's configs.Load of the
// file it started with, flag overrides applied) and makes it the running
// config for what starts from now on: the roles (new, changed and removed
// ones, their allowed_uids, allowed_groups, ttl and egress blocks) and
// broker.admin_uids. Live sessions keep what they were issued; their
// renewals never read the broker's config (see docs/operations.md).
//
// It rejects the new config, keeping the running one, when load fails
// (validation), when a key that only a restart applies changed (the
// socket, dirs, store, provider blocks... each is named), or when a role's
// aws or kube block differs from the one the daemon started with: those
// providers set up per-role state (IAM deny policies, RBAC Roles and
// namespaces) when built. Applied or rejected, the reload is audited.
func (b *Broker) Reload(load func() (*configs.Config, error)) (ReloadResult, error) {
	return b.reload(load, nil)
}

// RequestReload is `credbroker config reload`: an admin's request to
// reload the config file the daemon was started with (Options.LoadConfig),
// as SIGHUP does, systemd told as for SIGHUP.
func (b *Broker) RequestReload(c Caller) (ReloadResult, error) {
	if !b.isAdmin(c.UID) {
		err := fmt.Errorf("%w: uid %d may not reload the config: only an admin may (%s); ask one, or send the daemon SIGHUP (systemctl reload credbroker)",
			ErrForbidden, c.UID, b.adminsText())
		return ReloadResult{}, b.refuse(Event{Event: EvAccessRefused}, c, err)
	}
	if b.loadConfig == nil {
		return ReloadResult{}, fmt.Errorf("%w: this broker was started without a config file to reload", ErrBadRequest)
	}
	return b.reloadNotified(&c)
}

// reloadNotified reloads with Options.LoadConfig, telling systemd
// (RELOADING=1, then READY=1) so that `systemctl reload` returns once it
// is done; c is who asked (nil: SIGHUP).
func (b *Broker) reloadNotified(c *Caller) (ReloadResult, error) {
	notifyReloading(b.log)
	res, err := b.reload(b.loadConfig, c)
	status := "serving " + b.built.Broker.Socket + " (config reloaded)"
	if err != nil {
		status = "serving " + b.built.Broker.Socket + " (config reload rejected, the running config stays: see the log)"
	}
	notify(b.log, "READY=1\nSTATUS="+status)
	return res, err
}

// reload is Reload, audited with c as the caller when set.
func (b *Broker) reload(load func() (*configs.Config, error), c *Caller) (ReloadResult, error) {
	ev := Event{Event: EvConfigReload}
	if c != nil {
		ev.CallerUID, ev.CallerPID = uidPtr(c.UID), c.PID
	}
	b.reloadMu.Lock()
	defer b.reloadMu.Unlock()
	next, err := load()
	if err == nil {
		err = b.checkReload(next)
	}
	if err != nil {
		err = fmt.Errorf("%w: the running config stays: %w", ErrReloadRejected, err)
		ev.Reason, ev.Error = "rejected: the running config stays", err.Error()
		b.record(ev)
		b.log.Error("config reload rejected", "config", b.built.Path, "err", err)
		return ReloadResult{}, err
	}
	cur := b.config()
	res := reloadDiff(cur, next)
	ev.Reason = "applied: " + res.String()
	b.record(ev) // before it applies: no session starts under it unrecorded
	b.cfg.Store(next)
	b.log.Info("config reloaded", "config", next.Path, "change", res.String(), "roles", next.RoleNames())
	return res, nil
}

// checkReload finds why next cannot replace the running config live.
func (b *Broker) checkReload(next *configs.Config) error {
	host, err := next.EffectiveHostID()
	if err != nil {
		return err
	}
	next.Broker.HostID = host // as Serve sets it at start
	var keys []string
	for _, s := range []struct {
		key       string
		old, next any
	}{{"broker", b.built.Broker, next.Broker}, {"store", b.built.Store, next.Store}, {"providers", b.built.Providers, next.Providers}} {
		diffKeys(s.key, reflect.ValueOf(s.old), reflect.ValueOf(s.next), &keys)
	}
	keys = slices.DeleteFunc(keys, func(k string) bool { return k == "broker.admin_uids" })
	var errs []error
	if len(keys) > 0 {
		errs = append(errs, fmt.Errorf("changed %s: restart the daemon to apply (only roles and broker.admin_uids reload)", strings.Join(keys, ", ")))
	}
	if fixed := fixedRoleBlocks(b.built, next); len(fixed) > 0 {
		errs = append(errs, fmt.Errorf("changed %s: the aws and kube providers set up each role's revocation (IAM deny policies, RBAC Roles and namespaces) when the daemon starts; restart the daemon to apply",
			strings.Join(fixed, ", ")))
	}
	return errors.Join(errs...)
}

// fixedRoleBlocks names each roles.<name>.aws and roles.<name>.kube block
// of next that differs from the one the daemon started with (built). A
// block next drops is fine: new sessions of the role no longer get it, and
// the provider still knows it for the live ones.
func fixedRoleBlocks(built, next *configs.Config) []string {
	var keys []string
	for _, name := range slices.Sorted(maps.Keys(next.Roles)) {
		r, old := next.Roles[name], built.Roles[name]
		if r.AWS != nil && !reflect.DeepEqual(r.AWS, old.AWS) {
			keys = append(keys, "roles."+name+".aws")
		}
		if r.Kube != nil && !reflect.DeepEqual(r.Kube, old.Kube) {
			keys = append(keys, "roles."+name+".kube")
		}
	}
	return keys
}

// reloadDiff says which roles next adds, changes and removes, and whether
// broker.admin_uids changed.
func reloadDiff(cur, next *configs.Config) ReloadResult {
	var r ReloadResult
	for _, name := range slices.Sorted(maps.Keys(next.Roles)) {
		old, ok := cur.Roles[name]
		switch {
		case !ok:
			r.Added = append(r.Added, name)
		case !reflect.DeepEqual(old, next.Roles[name]):
			r.Changed = append(r.Changed, name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(cur.Roles)) {
		if _, ok := next.Roles[name]; !ok {
			r.Removed = append(r.Removed, name)
		}
	}
	r.AdminUIDs = !slices.Equal(cur.Broker.AdminUIDs, next.Broker.AdminUIDs)
	return r
}

// diffKeys appends to keys the YAML key (prefix.field...) of every
// setting that differs between a and b, descending into structs and into
// pointers to structs set on both sides.
func diffKeys(prefix string, a, b reflect.Value, keys *[]string) {
	switch {
	case a.Kind() == reflect.Pointer && !a.IsNil() && !b.IsNil():
		diffKeys(prefix, a.Elem(), b.Elem(), keys)
	case a.Kind() == reflect.Struct:
		t := a.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if !f.IsExported() || name == "-" {
				continue
			}
			if name == "" {
				name = strings.ToLower(f.Name)
			}
			diffKeys(prefix+"."+name, a.Field(i), b.Field(i), keys)
		}
	case !reflect.DeepEqual(a.Interface(), b.Interface()):
		*keys = append(*keys, prefix)
	}
}
