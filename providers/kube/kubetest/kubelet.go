package kubetest

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	remotecommandconsts "k8s.io/apimachinery/pkg/util/remotecommand"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/kubelet/pkg/cri/streaming/portforward"
	remotecommandserver "k8s.io/kubelet/pkg/cri/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"
)

// Kubelet stands in for a node's kubelet, which this test cluster does
// not have (it is kube-apiserver and etcd only: a real kubelet needs a
// container runtime and root). It is registered as a Node whose
// InternalIP is 127.0.0.1 and whose kubelet port is its listener, so the
// real kube-apiserver sends it what it would send a kubelet for a pod
// bound to that node: GET /containerLogs/... for `kubectl logs`, and the
// upgraded /exec/... and /portForward/... streams for `kubectl exec` and
// `kubectl port-forward`, over TLS the API server verifies
// (--kubelet-certificate-authority). The streams are served by the
// kubelet's own streaming code (k8s.io/kubelet/pkg/cri/streaming), so the
// protocols (SPDY and WebSocket, every remotecommand version) are the real
// ones; only the container is replaced: "exec" runs a few built-in
// commands in this process (echo, cat, exit N), and "port-forward" dials
// the address the test gives for a port.
type Kubelet struct {
	// Node is the registered node's name; bind pods to it with Pod.
	Node string
	// LogLines are what /containerLogs returns, one per line.
	LogLines []string

	srv *http.Server

	mu    sync.Mutex
	ports map[int32]string
	seen  []string
}

// StartKubelet starts a kubelet stand-in on 127.0.0.1 and registers its
// node with the shared API server. Stopped at the end of the test.
func (s *Server) StartKubelet(t testing.TB) *Kubelet {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(filepath.Join(s.Dir, "kubelet.crt"), filepath.Join(s.Dir, "kubelet.key"))
	if err != nil {
		t.Fatalf("kubetest: kubelet certificate: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	k := &Kubelet{
		Node:     "node-" + strings.ToLower(rand.Text()[:8]),
		LogLines: []string{"kubelet stand-in: line 1", "kubelet stand-in: line 2"},
		ports:    map[int32]string{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /containerLogs/{ns}/{pod}/{container}", k.serveLogs)
	mux.HandleFunc("/exec/{ns}/{pod}/{container}", k.serveExec)
	mux.HandleFunc("/portForward/{ns}/{pod}", k.servePortForward)
	k.srv = &http.Server{
		Handler:           mux,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() { _ = k.srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = k.srv.Close() })

	ctx := context.Background()
	node, err := s.Admin.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: k.Node}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("kubetest: create node %s: %v", k.Node, err)
	}
	node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}}
	node.Status.DaemonEndpoints.KubeletEndpoint.Port = int32(ln.Addr().(*net.TCPAddr).Port) //nolint:gosec // a TCP port fits
	node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue,
		LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now(), Reason: "KubeletReady"}}
	if _, err := s.Admin.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("kubetest: node %s status: %v", k.Node, err)
	}
	return k
}

// Pod creates a running pod named name in ns, with one container "app",
// bound to the stand-in's node (and the namespace's default service
// account, created if missing, since no controller manager makes it).
func (k *Kubelet) Pod(t testing.TB, s *Server, ns, name string) {
	t.Helper()
	ctx := context.Background()
	if err := create(ctx, s.Admin, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: ns}}); err != nil {
		t.Fatalf("kubetest: service account: %v", err)
	}
	no := false
	pod, err := s.Admin.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PodSpec{
			NodeName:                     k.Node,
			AutomountServiceAccountToken: &no,
			Containers:                   []corev1.Container{{Name: "app", Image: "credbroker.test/none"}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("kubetest: create pod %s/%s: %v", ns, name, err)
	}
	pod.Status.Phase = corev1.PodRunning
	pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "app", Ready: true, Image: "credbroker.test/none",
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}}}}
	if _, err := s.Admin.CoreV1().Pods(ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("kubetest: pod %s/%s status: %v", ns, name, err)
	}
}

// Forward makes port-forward to port of any pod dial addr.
func (k *Kubelet) Forward(port int32, addr string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.ports[port] = addr
}

// Seen lists the requests the API server sent, as "METHOD path", with
// the protocol an upgrade asked for.
func (k *Kubelet) Seen() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.seen...)
}

func (k *Kubelet) record(r *http.Request) {
	k.mu.Lock()
	defer k.mu.Unlock()
	e := r.Method + " " + r.URL.Path
	if u := r.Header.Get("Upgrade"); u != "" {
		e += " (upgrade: " + u + ")"
	}
	k.seen = append(k.seen, e)
}

func (k *Kubelet) serveLogs(w http.ResponseWriter, r *http.Request) {
	k.record(r)
	w.Header().Set("Content-Type", "text/plain")
	for _, l := range k.LogLines {
		fmt.Fprintln(w, l)
	}
}

func (k *Kubelet) serveExec(w http.ResponseWriter, r *http.Request) {
	k.record(r)
	opts, err := remotecommandserver.NewOptions(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	remotecommandserver.ServeExec(w, r, builtins{}, r.PathValue("pod"), "", r.PathValue("container"),
		r.URL.Query()["command"], opts, time.Minute, 30*time.Second, remotecommandconsts.SupportedStreamingProtocols)
}

func (k *Kubelet) servePortForward(w http.ResponseWriter, r *http.Request) {
	k.record(r)
	opts, err := portforward.NewV4Options(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	portforward.ServePortForward(w, r, k, r.PathValue("pod"), "", opts, time.Minute, 30*time.Second, portforward.SupportedProtocols)
}

// PortForward implements portforward.PortForwarder.
func (k *Kubelet) PortForward(ctx context.Context, _ string, _ types.UID, port int32, stream io.ReadWriteCloser) error {
	defer stream.Close()
	k.mu.Lock()
	addr, ok := k.ports[port]
	k.mu.Unlock()
	if !ok {
		return fmt.Errorf("kubetest: no forward for port %d", port)
	}
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(c, stream); done <- struct{}{} }()
	go func() { _, _ = io.Copy(stream, c); done <- struct{}{} }()
	<-done
	return nil
}

// builtins is the stand-in's container: a few commands run in process.
type builtins struct{}

func (builtins) ExecInContainer(_ context.Context, _ string, _ types.UID, _ string, cmd []string, in io.Reader, out, stderr io.WriteCloser, _ bool, _ <-chan remotecommand.TerminalSize, _ time.Duration) error {
	if out != nil {
		defer out.Close()
	}
	if stderr != nil {
		defer stderr.Close()
	}
	if len(cmd) == 0 {
		return errors.New("no command")
	}
	switch cmd[0] {
	case "echo":
		_, err := fmt.Fprintln(out, strings.Join(cmd[1:], " "))
		return err
	case "cat":
		if in == nil {
			return nil
		}
		_, err := io.Copy(out, in)
		return err
	case "exit":
		code := 1
		if len(cmd) > 1 {
			code, _ = strconv.Atoi(cmd[1])
		}
		return utilexec.CodeExitError{Err: fmt.Errorf("exit status %d", code), Code: code}
	default:
		if stderr != nil {
			fmt.Fprintf(stderr, "%s: not a command of the kubelet stand-in (echo, cat, exit)\n", cmd[0])
		}
		return utilexec.CodeExitError{Err: errors.New("exit status 127"), Code: 127}
	}
}
