package federationapi

import "net/http"

func (s *Server) handleGetEvent(r *http.Request) (any, error)         { return nil, errNotYet }
func (s *Server) handleState(r *http.Request) (any, error)            { return nil, errNotYet }
func (s *Server) handleStateIDs(r *http.Request) (any, error)         { return nil, errNotYet }
func (s *Server) handleEventAuth(r *http.Request) (any, error)        { return nil, errNotYet }
func (s *Server) handleBackfill(r *http.Request) (any, error)         { return nil, errNotYet }
func (s *Server) handleGetMissingEvents(r *http.Request) (any, error) { return nil, errNotYet }
