package broker

import (
	"context"
	"net/http"
)

// DaemonInfo is what GET /v1/health answers: that the daemon is up, and
// what a client must know to check a sandbox before it asks for a session.
type DaemonInfo struct {
	Status string `json:"status"`
	// SessionsDir is the dir session dirs are created in
	// (<broker.runtime_dir>/sessions). `credbroker run --sandbox bwrap`
	// checks that the session's uid can reach it before anything is
	// minted. Empty from a daemon that does not say.
	SessionsDir string `json:"sessions_dir,omitempty"`
}

func (s *Server) health(w http.ResponseWriter, _ *http.Request) {
	info := DaemonInfo{Status: "ok"}
	if s.b.env != nil {
		info.SessionsDir = s.b.env.Root
	}
	writeJSON(w, http.StatusOK, info)
}

// Info asks the daemon for its DaemonInfo; it also checks that the daemon
// answers, as Health does.
func (c *Client) Info(ctx context.Context) (DaemonInfo, error) {
	var info DaemonInfo
	err := c.do(ctx, http.MethodGet, "/v1/health", nil, &info)
	return info, err
}
