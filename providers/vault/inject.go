package vault

import (
	"context"
	"fmt"

	"github.com/hashicorp/vault/api"

	"github.com/credbroker/credbroker/configs"
	"github.com/credbroker/credbroker/internal/secret"
	"github.com/credbroker/credbroker/providers"
)

// readInject reads the values of the role's inject entries with the
// session token. Each lands in the env variable the entry names and in
// the grant's secrets as "inject:<env>": the broker hands the sandbox a
// placeholder in its place and the egress gateway puts the value on
// requests to the entry's hosts only (delivery by proxy, always).
func (p *Provider) readInject(ctx context.Context, c *api.Client, s providers.Session, ins []configs.Inject, g *providers.Grant) error {
	for _, in := range ins {
		sec, err := c.Logical().ReadWithContext(ctx, in.Path)
		if err != nil {
			return fmt.Errorf("vault: inject %s (read %s): %w", in.Env, in.Path, describe(err))
		}
		v, err := injectField(sec, in)
		if err != nil {
			return err
		}
		if g.Env == nil {
			g.Env = map[string]secret.Value{}
		}
		g.Env[in.Env] = v
		g.Secrets = append(g.Secrets, providers.IssuedSecret{Value: v, What: "inject " + in.Env, Expires: s.ExpiresAt,
			Name: providers.SecretInjectPrefix + in.Env})
	}
	return nil
}

// injectField finds in.Field under the answer's data, or under data.data
// (KV v2), and requires a non-empty string.
func injectField(sec *api.Secret, in configs.Inject) (secret.Value, error) {
	if sec == nil || sec.Data == nil {
		return secret.Value{}, fmt.Errorf("vault: inject %s: nothing at %s; check the path (KV v2 paths look like <mount>/data/<name>)", in.Env, in.Path)
	}
	raw, ok := sec.Data[in.Field]
	if inner, isMap := sec.Data["data"].(map[string]any); !ok && isMap {
		raw, ok = inner[in.Field]
	}
	if !ok {
		return secret.Value{}, fmt.Errorf("vault: inject %s: %s has no field %q; check inject.field", in.Env, in.Path, in.Field)
	}
	str, isStr := raw.(string)
	if !isStr || str == "" {
		return secret.Value{}, fmt.Errorf("vault: inject %s: field %q of %s is not a non-empty string", in.Env, in.Field, in.Path)
	}
	return secret.New(str), nil
}
