package broker

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestPeerCredGroups: the caller's uid, primary gid and every
// supplementary group reach the broker from the kernel (SO_PEERCRED and
// SO_PEERGROUPS), so allowed_groups checks what the process really has.
func TestPeerCredGroups(t *testing.T) {
	l, err := net.Listen("unix", filepath.Join(t.TempDir(), "s.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		accepted <- c
	}()
	dialed, err := net.Dial("unix", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer dialed.Close()
	conn := <-accepted
	if conn == nil {
		t.Fatal("accept failed")
	}
	defer conn.Close()
	c, err := peerCred(conn)
	if err != nil {
		t.Fatal(err)
	}
	groups, err := os.Getgroups()
	if err != nil {
		t.Fatal(err)
	}
	if c.UID != os.Getuid() || c.PID != os.Getpid() || len(c.GIDs) == 0 || c.GIDs[0] != os.Getegid() {
		t.Fatalf("caller = %+v, want uid %d pid %d primary gid %d", c, os.Getuid(), os.Getpid(), os.Getegid())
	}
	for _, g := range groups {
		if !slices.Contains(c.GIDs, g) {
			t.Errorf("supplementary group %d missing from %v", g, c.GIDs)
		}
	}
}
