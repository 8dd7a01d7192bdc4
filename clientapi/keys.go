package clientapi

// keyRoutes lists the end-to-end encryption key endpoints (/keys/*, /room_keys/*).
func (s *Server) keyRoutes() []route {
	return nil
}
