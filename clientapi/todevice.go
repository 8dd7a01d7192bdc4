package clientapi

// toDeviceRoutes lists the send-to-device endpoint.
func (s *Server) toDeviceRoutes() []route {
	return nil
}
