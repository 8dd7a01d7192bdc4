package email

import (
	"errors"
	"net/http"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
)

// handleSubmitToken handles POST /_lattice/email/submit_token, the submit_url: the body and
// answers of the identity service API's POST /validate/email/submitToken.
func (s *Service) handleSubmitToken(r *http.Request) (any, error) {
	var req struct {
		SID          string `json:"sid"`
		ClientSecret string `json:"client_secret"`
		Token        string `json:"token"`
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.SID == "" || req.ClientSecret == "" || req.Token == "" {
		return nil, spec.MissingParam("sid, client_secret and token are required")
	}
	if _, err := s.SubmitToken(r.Context(), req.SID, req.ClientSecret, req.Token); err != nil {
		return nil, err
	}
	return map[string]bool{"success": true}, nil
}

// handleLink handles GET /_lattice/email/submit_token, the link of the mail: an HTML page
// that says the address is verified (or a redirect to the session's next_link), or why not,
// with status 400 for a bad or expired link.
func (s *Service) handleLink(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	sess, err := s.SubmitToken(r.Context(), q.Get("sid"), q.Get("client_secret"), q.Get("token"))
	if err == nil {
		if sess.NextLink != "" {
			http.Redirect(w, r, sess.NextLink, http.StatusFound)
			return
		}
		s.page(w, http.StatusOK, pageData{OK: true, Title: "Your email is verified",
			Message: "Thank you. Go back to your app to continue."})
		return
	}
	d := pageData{Title: "This link does not work"}
	var herr *httputil.Error
	var merr spec.MatrixError
	switch {
	case errors.As(err, &herr) && herr.Code == "M_SESSION_EXPIRED":
		d.Title, d.Message = "This link has expired", "Ask your app to send a new mail, and follow the link in the new mail."
	case errors.As(err, &herr) && herr.Code == "M_TOKEN_INCORRECT",
		errors.As(err, &merr) && merr.ErrCode == spec.ErrorInvalidParam:
		d.Message = "The link is incomplete, was already used, or a newer mail replaced it. Copy the whole link from the latest mail, or ask your app to send a new one."
	default:
		s.log.Error("email link", "err", err)
		s.page(w, http.StatusInternalServerError, pageData{Title: "Something went wrong",
			Message: "The server could not check the link. Please try again later."})
		return
	}
	s.page(w, http.StatusBadRequest, d)
}

func (s *Service) page(w http.ResponseWriter, status int, d pageData) {
	d.AppName = s.cfg.AppName
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	w.Header().Set("X-Frame-Options", "DENY")
	w.WriteHeader(status)
	_ = htmlPage.Execute(w, d)
}
