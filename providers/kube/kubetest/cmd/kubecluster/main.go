// Command kubecluster runs the test kube-apiserver (with etcd) for
// `make demo`: it prepares namespace "agents" with the Role pod-reader and
// the broker's minimal RBAC (configs/examples/kube/broker-rbac.yaml), writes
// a kubeconfig whose "broker" context holds only that RBAC and whose
// "admin" context may do anything, prints KEY=VALUE lines and runs until
// interrupted.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/credbroker/credbroker/providers/kube/kubetest"
)

func main() {
	out := flag.String("kubeconfig", "", "copy the kubeconfig (contexts admin and broker) here")
	flag.Parse()
	if err := run(*out); err != nil {
		fmt.Fprintln(os.Stderr, "kubecluster:", err)
		os.Exit(1)
	}
}

func run(out string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv, err := kubetest.Start()
	if err != nil {
		return err
	}
	defer srv.Stop()
	rbac, err := kubetest.BrokerRBAC()
	if err != nil {
		return err
	}
	seed := "apiVersion: v1\nkind: Namespace\nmetadata: {name: agents}\n---\n" + rbac
	if err := srv.ApplyManifest(ctx, seed); err != nil {
		return err
	}
	if err := srv.CreateRole(ctx, kubetest.PodReader("agents")); err != nil {
		return err
	}
	kc := srv.Kubeconfig
	if out != "" {
		b, err := os.ReadFile(srv.Kubeconfig)
		if err != nil {
			return err
		}
		if err := os.WriteFile(out, b, 0o600); err != nil {
			return err
		}
		kc, _ = filepath.Abs(out)
	}
	fmt.Printf("KUBE_SERVER=%s\nKUBE_KUBECONFIG=%s\nKUBE_AUDIT_LOG=%s\nKUBE_START_SECONDS=%.1f\n",
		srv.URL, kc, srv.AuditLog, srv.StartTime.Seconds())
	<-ctx.Done()
	return nil
}
