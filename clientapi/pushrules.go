package clientapi

// pushRuleRoutes lists the push rule endpoints (/pushrules).
func (s *Server) pushRuleRoutes() []route {
	return nil
}
