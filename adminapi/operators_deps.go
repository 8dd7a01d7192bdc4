package adminapi

import "sync"

// operatorDeps is what the operator routes (media, server notices) keep beside Server's
// shared fields.
type operatorDeps struct {
	// noticeMu serialises server notices, so that each user gets one notices room and a
	// transaction ID sends one notice.
	noticeMu sync.Mutex
	media    Media
}

// SetMedia gives the admin API the media repository.
func (s *Server) SetMedia(m Media) { s.ops.media = m }
