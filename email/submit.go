package email

import (
	"errors"
	"mime"
	"net/http"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
)

// handleSubmit handles POST /_lattice/email/submit_token: a client's JSON submission (the
// submit_url), or the form of the link's page.
func (s *Service) handleSubmit(w http.ResponseWriter, r *http.Request) {
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct == "application/x-www-form-urlencoded" {
		s.handleConfirm(w, r)
		return
	}
	s.submitJSON.ServeHTTP(w, r)
}

// handleSubmitToken answers a client's POST to the submit_url: the body and answers of the
// identity service API's POST /validate/email/submitToken.
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
	if _, _, err := s.SubmitToken(r.Context(), req.SID, req.ClientSecret, req.Token); err != nil {
		return nil, err
	}
	return map[string]bool{"success": true}, nil
}

// buttons are the link page's confirm buttons by purpose.
var buttons = map[string]string{
	string(PurposeRegister): "Verify my email address",
	string(PurposeReset):    "Yes, I want to reset my password",
	string(PurposeAdd):      "Add this address to my account",
}

// handleLink handles GET /_lattice/email/submit_token, the link of the mail. It validates
// nothing (mail scanners and link previews open links): it checks the link and shows a page
// whose button posts the token back (handleConfirm), or says why the link does not work,
// with status 400.
func (s *Service) handleLink(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	sid, secret, token := q.Get("sid"), q.Get("client_secret"), q.Get("token")
	sess, err := s.checkToken(r.Context(), sid, secret, token)
	if err != nil {
		s.linkError(w, err)
		return
	}
	if sess.ValidatedTS != 0 {
		s.page(w, http.StatusOK, pageData{OK: true, Title: "Your email is verified",
			Message: "This address was verified already. Go back to your app to continue."})
		return
	}
	s.page(w, http.StatusOK, pageData{Title: "Confirm your email address",
		Message: "Press the button to confirm that " + sess.Email + " is your address.",
		Confirm: true, Action: SubmitPath, Button: buttons[sess.Purpose],
		SID: sid, ClientSecret: secret, Token: token})
}

// handleConfirm handles the link page's form: it validates the session, then sends the user
// to the session's next_link the first time, or says the address is verified.
func (s *Service) handleConfirm(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	if err := r.ParseForm(); err != nil {
		s.linkError(w, spec.InvalidParam("bad form"))
		return
	}
	sess, first, err := s.SubmitToken(r.Context(), r.PostForm.Get("sid"), r.PostForm.Get("client_secret"), r.PostForm.Get("token"))
	if err != nil {
		s.linkError(w, err)
		return
	}
	if first && sess.NextLink != "" {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Referrer-Policy", "no-referrer")
		http.Redirect(w, r, sess.NextLink, http.StatusSeeOther)
		return
	}
	s.page(w, http.StatusOK, pageData{OK: true, Title: "Your email is verified",
		Message: "Thank you. Go back to your app to continue."})
}

// linkError is the page of a link (or its form) that does not work.
func (s *Service) linkError(w http.ResponseWriter, err error) {
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
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(status)
	_ = htmlPage.Execute(w, d)
}
