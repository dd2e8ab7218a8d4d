package proxy

import "net/http"

// resignAWS checks and re-signs a request for a bound AWS endpoint.
func (s *Session) resignAWS(r *http.Request, vals map[string]value) error {
	return &refusal{"AWS re-signing is not wired yet"}
}
