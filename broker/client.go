package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"os"
	"time"
)

// ErrDaemonNotRunning means nothing answers on the socket.
var ErrDaemonNotRunning = errors.New("credbroker daemon is not running")

// Client talks to the daemon over its Unix socket.
type Client struct {
	socket string
	hc     *http.Client
	err    error // set by NewFailingClient
}

// NewFailingClient returns a client whose every call fails with err (used
// when the socket path itself could not be resolved).
func NewFailingClient(err error) *Client { return &Client{err: err} }

// NewClient returns a client for the daemon at socket. Before sending
// anything on a connection it checks who serves the socket (SO_PEERCRED)
// and accepts only root or this process's own uid.
func NewClient(socket string) *Client {
	return newClient(socket, os.Geteuid(), false)
}

// NewClientForDaemon is NewClient for a daemon that runs as daemonUID
// (broker.daemon_uid): the client accepts only root or that uid.
func NewClientForDaemon(socket string, daemonUID int) *Client {
	return newClient(socket, daemonUID, true)
}

func newClient(socket string, daemonUID int, configured bool) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			conn, err := d.DialContext(ctx, "unix", socket)
			if err != nil {
				return nil, err
			}
			if err := checkServer(conn, socket, daemonUID, configured); err != nil {
				conn.Close()
				return nil, err
			}
			return conn, nil
		},
		// Requests sent with Expect: 100-continue (revoke-all) learn that
		// the daemon admitted them before it answers.
		ExpectContinueTimeout: 30 * time.Second,
	}
	// Revoke-all may take long against slow servers; the daemon finishes it
	// even if we give up, so the timeout only bounds our wait.
	return &Client{socket: socket, hc: &http.Client{Transport: tr, Timeout: 10 * time.Minute}}
}

// Health checks that the daemon answers.
func (c *Client) Health(ctx context.Context) error {
	return c.do(ctx, http.MethodGet, "/v1/health", nil, nil)
}

// StartSession starts a session.
func (c *Client) StartSession(ctx context.Context, req StartRequest) (SessionInfo, error) {
	var si SessionInfo
	err := c.do(ctx, http.MethodPost, "/v1/sessions", req, &si)
	return si, err
}

// HoldSession binds session id to this process until ctx ends: the daemon
// ends the session when the connection drops, so a process killed even by
// SIGKILL does not leave it live. It returns nil when ctx ends, and an
// error when the daemon refused or the connection was lost (a daemon
// restart lets held sessions go; hold again).
func (c *Client) HoldSession(ctx context.Context, id string) error {
	if c.err != nil {
		return c.err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://credbroker/v1/sessions/"+url.PathEscape(id)+"/hold", nil)
	if err != nil {
		return err
	}
	hc := *c.hc
	hc.Timeout = 0 // held for the session's life
	resp, err := hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("hold session %s: %w", id, dialError(c.socket, err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e apiError
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(raw, &e) != nil || e.Error == "" {
			return fmt.Errorf("hold session %s: daemon answered %s", id, resp.Status)
		}
		return &RemoteError{Code: e.Code, Msg: e.Error}
	}
	_, err = io.Copy(io.Discard, resp.Body) // returns when either side lets go
	if ctx.Err() != nil {
		return nil
	}
	if err == nil {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("hold session %s: the daemon let go: %w", id, err)
}

// ListSessions lists this broker's live sessions (all: ended ones too).
func (c *Client) ListSessions(ctx context.Context, all bool) ([]SessionInfo, error) {
	return c.ListSessionsWith(ctx, SessionQuery{All: all})
}

// ListSessionsWith lists sessions as q selects (q.AllHosts: the fleet's).
func (c *Client) ListSessionsWith(ctx context.Context, q SessionQuery) ([]SessionInfo, error) {
	var ss []SessionInfo
	v := url.Values{}
	if q.All {
		v.Set("all", "1")
	}
	if q.AllHosts {
		v.Set("all_hosts", "1")
	}
	p := "/v1/sessions"
	if len(v) > 0 {
		p += "?" + v.Encode()
	}
	err := c.do(ctx, http.MethodGet, p, nil, &ss)
	return ss, err
}

// GetSession returns one session.
func (c *Client) GetSession(ctx context.Context, id string) (SessionInfo, error) {
	var si SessionInfo
	err := c.do(ctx, http.MethodGet, "/v1/sessions/"+url.PathEscape(id), nil, &si)
	return si, err
}

// EndSession ends a session, revoking its leases.
func (c *Client) EndSession(ctx context.Context, id, reason string) (SessionInfo, error) {
	var si SessionInfo
	err := c.do(ctx, http.MethodDelete, "/v1/sessions/"+url.PathEscape(id)+"?reason="+url.QueryEscape(reason), nil, &si)
	return si, err
}

// RevokeAll declares an incident.
func (c *Client) RevokeAll(ctx context.Context, reason string) (RevokeReport, error) {
	return c.RevokeAllNotify(ctx, reason, nil)
}

// RevokeAllNotify is RevokeAll that calls accepted (when not nil) once the
// daemon has admitted the request and started reading it, before the
// revocation is done; a request refused or never delivered never calls it.
func (c *Client) RevokeAllNotify(ctx context.Context, reason string, accepted func()) (RevokeReport, error) {
	var rep RevokeReport
	if accepted != nil {
		// The daemon's HTTP server sends "100 Continue" when the handler
		// first reads the body, i.e. after the caller was authorized.
		ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{Got100Continue: accepted})
	}
	err := c.doExpect(ctx, http.MethodPost, "/v1/revoke-all", revokeAllRequest{Reason: reason}, &rep, accepted != nil)
	return rep, err
}

// ClearIncident lifts the incident lock.
func (c *Client) ClearIncident(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/v1/incident/clear", struct{}{}, nil)
}

// ReloadConfig asks the daemon to reload its config file (admins only);
// a rejected reload returns ErrReloadRejected (wrapped) naming why.
func (c *Client) ReloadConfig(ctx context.Context) (ReloadResult, error) {
	var res ReloadResult
	err := c.do(ctx, http.MethodPost, "/v1/config/reload", struct{}{}, &res)
	return res, err
}

// ReportGuardHit reports a leak guard finding (and revokes its session
// when h.Revoke).
func (c *Client) ReportGuardHit(ctx context.Context, h GuardHit) (SessionInfo, error) {
	var si SessionInfo
	err := c.do(ctx, http.MethodPost, "/v1/guard/hits", h, &si)
	return si, err
}

// Status returns the daemon's status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	return c.StatusWith(ctx, false)
}

// StatusWith returns the daemon's status, with allHosts the whole fleet's
// sessions and pending revocations.
func (c *Client) StatusWith(ctx context.Context, allHosts bool) (Status, error) {
	var st Status
	p := "/v1/status"
	if allHosts {
		p += "?all_hosts=1"
	}
	err := c.do(ctx, http.MethodGet, p, nil, &st)
	return st, err
}

// RemoteError is an error the daemon returned; Is matches the sentinel of
// its code so callers can use errors.Is as with a local Broker.
type RemoteError struct {
	Code string
	Msg  string
}

func (e *RemoteError) Error() string { return e.Msg }

// Is maps wire codes back to sentinels.
func (e *RemoteError) Is(target error) bool {
	for _, c := range errCodes {
		if c.code == e.Code {
			return target == c.err
		}
	}
	return false
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	return c.doExpect(ctx, method, path, in, out, false)
}

// doExpect is do; with expect, the body waits for the daemon's
// "100 Continue".
func (c *Client) doExpect(ctx context.Context, method, path string, in, out any, expect bool) error {
	if c.err != nil {
		return c.err
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://credbroker"+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if expect {
		req.Header.Set("Expect", "100-continue")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return dialError(c.socket, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("read daemon answer: %w", err)
	}
	if resp.StatusCode == http.StatusAccepted {
		var p struct {
			Result json.RawMessage `json:"result"`
			Error  string          `json:"error"`
			Code   string          `json:"code"`
		}
		if err := json.Unmarshal(raw, &p); err != nil {
			return fmt.Errorf("decode daemon answer: %w", err)
		}
		if out != nil && len(p.Result) > 0 {
			_ = json.Unmarshal(p.Result, out)
		}
		return &RemoteError{Code: p.Code, Msg: p.Error}
	}
	if resp.StatusCode >= 300 {
		var e apiError
		if json.Unmarshal(raw, &e) != nil || e.Error == "" {
			return fmt.Errorf("daemon answered %s", resp.Status)
		}
		return &RemoteError{Code: e.Code, Msg: e.Error}
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("decode daemon answer: %w", err)
		}
	}
	return nil
}
