package adminapi

// Server notices: send_server_notice.
func (s *Server) noticeRoutes() []route {
	return nil
}
