package federationapi

import "net/http"

func (s *Server) handleMakeJoin(r *http.Request) (any, error)  { return nil, errNotYet }
func (s *Server) handleSendJoin(r *http.Request) (any, error)  { return nil, errNotYet }
func (s *Server) handleMakeLeave(r *http.Request) (any, error) { return nil, errNotYet }
func (s *Server) handleSendLeave(r *http.Request) (any, error) { return nil, errNotYet }
func (s *Server) handleMakeKnock(r *http.Request) (any, error) { return nil, errNotYet }
func (s *Server) handleSendKnock(r *http.Request) (any, error) { return nil, errNotYet }
func (s *Server) handleInvite(r *http.Request) (any, error)    { return nil, errNotYet }
