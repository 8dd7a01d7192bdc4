package clientapi

// receiptRoutes lists the receipt and read marker endpoints.
func (s *Server) receiptRoutes() []route {
	return nil
}
