package adminapi

// Users: list, query, create or modify, whois, deactivate, passwords, devices, pushers, media, account data, rate limits, shadow-ban, login as a user, suspension and lock.
func (s *Server) userRoutes() []route {
	return nil
}
