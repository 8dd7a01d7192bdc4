package oauthserver

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/json"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// The web pages: signed cookies, CSRF tokens and templates.

const (
	cookieName      = "lattice_session"
	secureCookie    = "__Host-lattice_session" // behind https: only this host sets it, for every path
	signedInFor     = 24 * time.Hour
	anonymousFor    = 2 * time.Hour
	csrfField       = "csrf"
	contentSecurity = "default-src 'self'; img-src 'self' https:; style-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)

// webSession is the browser's session, kept in a signed cookie (nothing server-side, so
// every process of a cluster reads it): a random ID for the CSRF tokens, and who signed in.
type webSession struct {
	SID    string `json:"s"`
	UserID string `json:"u,omitempty"`
	Exp    int64  `json:"e"`
	Signed int64  `json:"i,omitempty"` // when UserID signed in (Unix ms)
}

// cookieSigner signs and checks the session cookie with HMAC-SHA256.
type cookieSigner struct {
	secret []byte
	secure bool // the public base URL is https
	// validSince returns since when (Unix ms) a user's signed-in sessions are valid: a
	// password change or logging out of all devices ends the ones before.
	validSince func(ctx context.Context, userID string) (int64, error)
}

func (c cookieSigner) mac(msg string) string {
	m := hmac.New(sha256.New, c.secret)
	m.Write([]byte(msg))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// read returns the request's valid, unexpired session, or nil.
func (c cookieSigner) read(r *http.Request) *webSession {
	ck, err := r.Cookie(c.name())
	if err != nil {
		return nil
	}
	payload, sig, ok := strings.Cut(ck.Value, ".")
	if !ok || !hmac.Equal([]byte(sig), []byte(c.mac("session|"+payload))) {
		return nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return nil
	}
	var ws webSession
	if json.Unmarshal(raw, &ws) != nil || ws.SID == "" || time.Now().Unix() >= ws.Exp {
		return nil
	}
	if ws.UserID != "" && c.validSince != nil {
		if since, err := c.validSince(r.Context(), ws.UserID); err != nil || ws.Signed < since {
			return nil
		}
	}
	return &ws
}

// write sets the session cookie: HttpOnly, SameSite=Lax, Secure behind https.
func (c cookieSigner) write(w http.ResponseWriter, ws *webSession) {
	raw, _ := json.Marshal(ws)
	payload := base64.RawURLEncoding.EncodeToString(raw)
	path := "/_lattice/"
	if c.secure {
		path = "/" // the __Host- prefix requires it
	}
	http.SetCookie(w, &http.Cookie{
		Name: c.name(), Value: payload + "." + c.mac("session|"+payload), Path: path,
		Expires: time.Unix(ws.Exp, 0), HttpOnly: true, Secure: c.secure, SameSite: http.SameSiteLaxMode,
	})
}

func (c cookieSigner) name() string {
	if c.secure {
		return secureCookie
	}
	return cookieName
}

// csrf is the CSRF token of a session's forms: bound to its random ID.
func (c cookieSigner) csrf(ws *webSession) string { return c.mac("csrf|" + ws.SID) }

func randomID(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// session returns the browser's session, starting an anonymous one when it has none.
func (s *Server) session(w http.ResponseWriter, r *http.Request) *webSession {
	if ws := s.cookies.read(r); ws != nil {
		return ws
	}
	ws := &webSession{SID: randomID(18), Exp: time.Now().Add(anonymousFor).Unix()}
	s.cookies.write(w, ws)
	return ws
}

// SignInUser starts a signed-in browser session for userID (a new session ID, so that a
// token planted before signing in is worthless) and continues to next, a local path. It is
// what another sign-in method (package sso) calls once it has established who the user is.
func (s *Server) SignInUser(w http.ResponseWriter, r *http.Request, userID, next string) {
	now := time.Now()
	ws := &webSession{SID: randomID(18), UserID: userID, Exp: now.Add(signedInFor).Unix(), Signed: now.UnixMilli()}
	s.cookies.write(w, ws)
	http.Redirect(w, r, safeNext(next), http.StatusSeeOther)
}

// SignedInUser returns the user signed in to this browser's session of these pages, if any.
// Another package's page under /_lattice/account/ (the legacy SSO flow of package sso) uses
// it to learn who signed in through SignInURL.
func (s *Server) SignedInUser(r *http.Request) (string, bool) {
	if ws := s.cookies.read(r); ws != nil && ws.UserID != "" {
		return ws.UserID, true
	}
	return "", false
}

// SignInURL is the sign-in page (with register, the registration page) that continues to
// next, a path under /_lattice/account/ or the authorization endpoint, once signed in.
func (s *Server) SignInURL(next string, register bool) string {
	page := pathLogin
	if register {
		page = pathSignUp
	}
	return page + "?next=" + url.QueryEscape(safeNext(next))
}

// keepSignedIn renews the signed-in session's cookie after the user's own password change,
// which ended the sessions signed in before.
func (s *Server) keepSignedIn(w http.ResponseWriter, ws *webSession) {
	ws.Signed = time.Now().UnixMilli()
	s.cookies.write(w, ws)
}

// checkForm parses a POSTed form and checks its CSRF token against the session cookie. On
// failure it has answered with an error page.
func (s *Server) checkForm(w http.ResponseWriter, r *http.Request) (*webSession, bool) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		s.errorPage(w, r, http.StatusBadRequest, "err_bad_form")
		return nil, false
	}
	ws := s.cookies.read(r)
	if ws == nil || !hmac.Equal([]byte(r.PostForm.Get(csrfField)), []byte(s.cookies.csrf(ws))) {
		s.errorPage(w, r, http.StatusForbidden, "err_csrf")
		return nil, false
	}
	return ws, true
}

// safeNext keeps next only when it is a path of these pages or the authorization endpoint:
// never another site (no open redirect).
func safeNext(next string) string {
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || strings.HasPrefix(next, "//") || strings.Contains(next, "\\") ||
		!(strings.HasPrefix(u.Path, "/_lattice/account/") || u.Path == pathAuthorize) || strings.Contains(u.Path, "..") {
		return pathAccount
	}
	return u.RequestURI()
}

// requireUser returns the signed-in session, or sends the browser to sign in and come back
// to this page.
func (s *Server) requireUser(w http.ResponseWriter, r *http.Request) *webSession {
	if ws := s.cookies.read(r); ws != nil && ws.UserID != "" {
		return ws
	}
	http.Redirect(w, r, pathLogin+"?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
	return nil
}

//go:embed web
var webFS embed.FS

// pages are the parsed templates, one per page, each with the shared layout.
type pages struct {
	byName map[string]*template.Template
	css    []byte
}

func loadPages() *pages {
	p := &pages{byName: map[string]*template.Template{}}
	layout := template.Must(template.ParseFS(webFS, "web/layout.html"))
	for _, name := range []string{"login", "register", "consent", "device", "account", "error", "done", "email"} {
		p.byName[name] = template.Must(template.Must(layout.Clone()).ParseFS(webFS, "web/"+name+".html"))
	}
	p.css, _ = webFS.ReadFile("web/style.css")
	return p
}

// pageData is what every template gets; Page holds the page's own values.
type pageData struct {
	Lang    string
	T       map[string]string
	Title   string
	CSRF    string
	UserID  string
	Error   string
	Methods []SignInMethod
	Links   []AccountLink
	Page    any
}

// render writes a page with the security headers of every page.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name, titleKey string, ws *webSession, errKey string, page any) {
	lang, msgs := messagesFor(r)
	d := pageData{Lang: lang, T: msgs, Title: msgs[titleKey], Page: page, Methods: s.signInMethods, Links: s.accountLinks}
	if ws != nil {
		d.CSRF, d.UserID = s.cookies.csrf(ws), ws.UserID
	}
	if errKey != "" {
		if m, ok := msgs[errKey]; ok {
			d.Error = m
		} else {
			d.Error = errKey
		}
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	if h.Get("Content-Security-Policy") == "" { // the consent page sets its own
		h.Set("Content-Security-Policy", contentSecurity)
	}
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if err := s.pages.byName[name].ExecuteTemplate(w, "layout", d); err != nil {
		s.log.Error("render page", "page", name, "err", err)
	}
}

// errorPage shows an error that must not go back to a client (unknown client, bad
// redirect URI, CSRF).
func (s *Server) errorPage(w http.ResponseWriter, r *http.Request, status int, errKey string) {
	s.render(w, r, status, "error", "error_title", s.cookies.read(r), errKey, nil)
}

func (s *Server) handleStylesheet(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	_, _ = w.Write(s.pages.css)
}
