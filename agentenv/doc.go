// Package agentenv owns everything the sandbox sees: the session dir layout,
// secure atomic writes on tmpfs, the env file format, and the core of the
// `credbroker exec` wrapper. It never calls a provider and never touches the
// lease store.
//
// A session dir looks like this (dirs 0500, files 0400, owned by the
// agent's uid when the broker runs as root):
//
//	<Root>/<id>/
//	    session.json   Meta: id, role, created_at, expires_at, revoked, mount (no secrets)
//	    env            KEY=VALUE lines, values POSIX-shell single-quoted, sorted by key
//	    vault/token    ...one file per entry of a provider Grant's Files map
//
// Writes happen through directory file descriptors with O_NOFOLLOW, so no
// symlink is ever followed below Root. A new session dir is built under a
// temporary name and renamed into place, so a reader sees either nothing or
// the complete dir; a refreshed file is written next to the old one and
// renamed over it, so a read-only bind mount of the directory sees either
// the old or the new content, never a partial one.
//
// Env values may refer to files in the session dir as
// ${CREDBROKER_SESSION_DIR}/rel (see SessionDirRef): the exec wrapper
// replaces that prefix with the path at which it found the session dir, so
// the same env file works on the host and at any mount point in a sandbox.
package agentenv
