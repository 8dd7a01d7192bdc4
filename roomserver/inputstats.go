package roomserver

import "time"

// inputWaited reports the wait of an input that arrived at start and now holds its room's
// lane.
func (s *Server) inputWaited(start time.Time) {
	if s.cfg.InputWaited != nil {
		s.cfg.InputWaited(time.Since(start))
	}
}

// InputQueue returns how many inputs are waiting for their room's lane in all rooms
// together, and in the room with the most waiting: how far event input is behind. It takes
// the rooms' lookup lock briefly and no room's lock.
func (s *Server) InputQueue() (total, deepest int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.rooms {
		n := int(r.waiting.Load())
		total += n
		deepest = max(deepest, n)
	}
	return total, deepest
}
