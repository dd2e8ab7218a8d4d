package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// maxBody bounds request bodies; every API request is small.
const maxBody = 64 << 10

// apiError is the JSON error body.
type apiError struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

// Error codes on the wire, mapped from the sentinel errors.
var errCodes = []struct {
	err    error
	code   string
	status int
}{
	{ErrUnknownRole, "unknown_role", http.StatusNotFound},
	{ErrBadRequest, "bad_request", http.StatusBadRequest},
	{ErrIncident, "incident", http.StatusConflict},
	{ErrNotFound, "not_found", http.StatusNotFound},
	{ErrForbidden, "forbidden", http.StatusForbidden},
	{ErrPending, "pending", http.StatusAccepted},
	{ErrProvider, "provider", http.StatusBadGateway},
	{ErrStoreUnavailable, "store_unavailable", http.StatusServiceUnavailable},
	{ErrAuditUnavailable, "audit_unavailable", http.StatusServiceUnavailable},
	{ErrReloadRejected, "reload_rejected", http.StatusUnprocessableEntity},
}

// Server serves the broker's API on a Unix socket.
type Server struct {
	b       *Broker
	allowed []int
	log     *slog.Logger
	srv     *http.Server

	stopping chan struct{} // closed by Shutdown: held sessions stay live
	stopOnce sync.Once
}

// NewServer returns the API server. Only uids in allowed and admins (root,
// the daemon's own uid, broker.admin_uids) may call it; what each may do
// is checked by the broker (roles, incident clear, other users' sessions).
func NewServer(b *Broker, allowed []int, log *slog.Logger) *Server {
	s := &Server{b: b, allowed: allowed, log: log, stopping: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/health", s.health)
	mux.HandleFunc("POST /v1/sessions", s.startSession)
	mux.HandleFunc("GET /v1/sessions", s.listSessions)
	mux.HandleFunc("GET /v1/sessions/{id}", s.getSession)
	mux.HandleFunc("DELETE /v1/sessions/{id}", s.endSession)
	mux.HandleFunc("POST /v1/sessions/{id}/hold", s.holdSession)
	mux.HandleFunc("POST /v1/revoke-all", s.revokeAll)
	mux.HandleFunc("POST /v1/incident/clear", s.clearIncident)
	mux.HandleFunc("GET /v1/status", s.status)
	mux.HandleFunc("POST /v1/guard/hits", s.guardHit)
	mux.HandleFunc("POST /v1/config/reload", s.reloadConfig)
	s.srv = &http.Server{
		Handler:           s.authorize(mux),
		ConnContext:       connContext,
		ReadHeaderTimeout: 10 * time.Second,
	}
	return s
}

// Listen opens the socket at path: a live daemon already there is an error,
// a stale socket file is removed; the socket is created with mode 0600 in a
// 0700 directory. A directory that exists already must be the daemon's
// and not writable by group or others (see checkPrivateDir), or Listen
// refuses it. With shared (broker.allowed_uids set), the socket is 0666
// and its directory 0711 so other users can connect at all; every request's
// peer uid is then checked against allowed_uids (SO_PEERCRED).
func Listen(path string, shared bool) (net.Listener, error) {
	if err := ensurePrivateDir("socket dir", filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	d := net.Dialer{Timeout: time.Second}
	if c, err := d.DialContext(context.Background(), "unix", path); err == nil {
		c.Close()
		return nil, fmt.Errorf("another credbroker daemon is already serving %s", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
	}
	old := umask(0o177)
	var lc net.ListenConfig
	l, err := lc.Listen(context.Background(), "unix", path)
	umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	mode := os.FileMode(0o600)
	if shared {
		mode = 0o666
		if err := os.Chmod(filepath.Dir(path), 0o711); err != nil {
			l.Close()
			return nil, fmt.Errorf("chmod socket dir: %w", err)
		}
	}
	if err := os.Chmod(path, mode); err != nil {
		l.Close()
		return nil, fmt.Errorf("chmod socket: %w", err)
	}
	return l, nil
}

// Serve serves until Shutdown.
func (s *Server) Serve(l net.Listener) error {
	err := s.srv.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting and waits for requests in flight. Held
// sessions are let go, not ended: a restarted daemon carries them on.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopOnce.Do(func() { close(s.stopping) })
	return s.srv.Shutdown(ctx)
}

func (s *Server) authorize(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := callerFrom(r.Context())
		if err != nil {
			writeErr(w, fmt.Errorf("%w: cannot identify the caller: %v", ErrForbidden, err))
			return
		}
		if !s.b.isAdmin(c.UID) && !slices.Contains(s.allowed, c.UID) {
			s.log.Warn("refused a caller not in allowed_uids", "caller_uid", c.UID, "caller_pid", c.PID, "path", r.URL.Path)
			s.b.record(Event{Event: EvAPIRefused, CallerUID: uidPtr(c.UID), CallerPID: c.PID, Reason: r.Method + " " + r.URL.Path})
			writeErr(w, fmt.Errorf("%w: uid %d is not in broker.allowed_uids", ErrForbidden, c.UID))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		next.ServeHTTP(w, r)
	})
}

func (s *Server) startSession(w http.ResponseWriter, r *http.Request) {
	var req StartRequest
	if !decode(w, r, &req) {
		return
	}
	c, _ := callerFrom(r.Context())
	si, err := s.b.StartSession(r.Context(), c, req)
	reply(w, http.StatusCreated, si, err)
}

func (s *Server) listSessions(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ss, err := s.b.ListSessionsWith(r.Context(), SessionQuery{All: q.Get("all") == "1", AllHosts: q.Get("all_hosts") == "1"})
	reply(w, http.StatusOK, ss, err)
}

func (s *Server) getSession(w http.ResponseWriter, r *http.Request) {
	si, err := s.b.GetSession(r.Context(), r.PathValue("id"))
	reply(w, http.StatusOK, si, err)
}

func (s *Server) endSession(w http.ResponseWriter, r *http.Request) {
	c, _ := callerFrom(r.Context())
	si, err := s.b.EndSession(r.Context(), c, r.PathValue("id"), r.URL.Query().Get("reason"))
	reply(w, http.StatusOK, si, err)
}

// holdSession binds a session to the caller's connection: the answer's
// headers go out at once and the request stays open; when the connection
// drops (the process that started the session exited or was killed, even
// with SIGKILL), the session ends. `credbroker run` and `session start --
// CMD` hold their session, so a killed wrapper cannot leave credentials
// valid until the TTL.
func (s *Server) holdSession(w http.ResponseWriter, r *http.Request) {
	c, _ := callerFrom(r.Context())
	id := r.PathValue("id")
	if err := s.b.CheckHold(r.Context(), c, id); err != nil {
		writeErr(w, err)
		return
	}
	w.WriteHeader(http.StatusOK)
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	select {
	case <-s.stopping:
		return
	case <-r.Context().Done():
	}
	select {
	case <-s.stopping:
		return // the daemon is stopping, not the holder
	default:
	}
	reason := fmt.Sprintf("the process holding it (pid %d) went away", c.PID)
	if _, err := s.b.EndSession(context.WithoutCancel(r.Context()), c, id, reason); err != nil {
		s.log.Warn("end a session whose holder went away", "session", id, "err", err)
	}
}

type revokeAllRequest struct {
	Reason string `json:"reason"`
}

func (s *Server) revokeAll(w http.ResponseWriter, r *http.Request) {
	var req revokeAllRequest
	if !decode(w, r, &req) {
		return
	}
	c, _ := callerFrom(r.Context())
	// Revocation must finish even if the client goes away.
	ctx := context.WithoutCancel(r.Context())
	rep, err := s.b.RevokeAll(ctx, c, req.Reason)
	reply(w, http.StatusOK, rep, err)
}

func (s *Server) clearIncident(w http.ResponseWriter, r *http.Request) {
	c, _ := callerFrom(r.Context())
	err := s.b.ClearIncident(r.Context(), c)
	reply(w, http.StatusOK, map[string]bool{"cleared": err == nil}, err)
}

func (s *Server) reloadConfig(w http.ResponseWriter, r *http.Request) {
	c, _ := callerFrom(r.Context())
	res, err := s.b.RequestReload(c)
	reply(w, http.StatusOK, res, err)
}

func (s *Server) guardHit(w http.ResponseWriter, r *http.Request) {
	var h GuardHit
	if !decode(w, r, &h) {
		return
	}
	c, _ := callerFrom(r.Context())
	si, err := s.b.ReportGuardHit(context.WithoutCancel(r.Context()), c, h)
	reply(w, http.StatusOK, si, err)
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	st, err := s.b.StatusWith(r.Context(), r.URL.Query().Get("all_hosts") == "1")
	reply(w, http.StatusOK, st, err)
}

// decode reads a strict JSON body; unknown fields are errors.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		writeErr(w, fmt.Errorf("%w: request body: %v", ErrBadRequest, err))
		return false
	}
	return true
}

// reply writes v, or the error. ErrPending replies carry the body too, so
// the client shows what was done and what is still pending.
func reply(w http.ResponseWriter, okStatus int, v any, err error) {
	if err == nil {
		writeJSON(w, okStatus, v)
		return
	}
	if errors.Is(err, ErrPending) {
		writeJSON(w, http.StatusAccepted, struct {
			Result any    `json:"result"`
			Error  string `json:"error"`
			Code   string `json:"code"`
		}{v, err.Error(), "pending"})
		return
	}
	writeErr(w, err)
}

func writeErr(w http.ResponseWriter, err error) {
	status, code := http.StatusInternalServerError, "internal"
	for _, e := range errCodes {
		if errors.Is(err, e.err) {
			status, code = e.status, e.code
			break
		}
	}
	writeJSON(w, status, apiError{Error: err.Error(), Code: code})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
