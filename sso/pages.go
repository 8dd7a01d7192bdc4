package sso

import (
	"html/template"
	"net/http"
	"net/url"
)

// The pages are plain HTML forms and links: no script is needed to sign in.
var pages = template.Must(template.New("").Parse(`
{{define "head"}}<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.}}</title>
<style>body{font-family:system-ui,sans-serif;max-width:32em;margin:3em auto;padding:0 1em;line-height:1.5}
a.button{display:block;margin:.5em 0;padding:.7em 1em;border:1px solid #888;border-radius:6px;text-decoration:none;color:inherit}
a.button:hover,button.button:hover{background:#eee}
button.button{display:block;width:100%;text-align:left;font:inherit;margin:.5em 0;padding:.7em 1em;border:1px solid #888;border-radius:6px;background:none;cursor:pointer}</style></head><body>{{end}}

{{define "choose"}}{{template "head" "Choose how to sign in"}}
<h1>Sign in</h1>
<p>Choose how to sign in:</p>
{{range .Providers}}<a class="button" id="idp-{{.ID}}" href="{{.Href}}">{{.Name}}</a>
{{end}}</body></html>{{end}}

{{define "confirm"}}{{template "head" "Continue to your client?"}}
<h1>Continue to {{.Host}}?</h1>
<p>You signed in as <strong>{{.UserID}}</strong>.</p>
<p>Continuing gives <strong>{{.Host}}</strong> access to your account. Continue only if you
started signing in from there: a link that someone sent you may be an attempt to take over your account.</p>
<form method="post" action="{{.Action}}"><input type="hidden" name="flow" value="{{.Flow}}"><button class="button" id="continue" type="submit">Continue to {{.Host}}</button></form>
</body></html>{{end}}

{{define "reauth"}}{{template "head" "Confirm your identity"}}
<h1>Confirm your identity</h1>
<p id="operation">A client is trying to <strong>{{.Description}}</strong> for your account <strong>{{.UserID}}</strong>.</p>
<p>If you did not expect this, do not continue: close this page. Someone may be trying to take over your account.</p>
<p>To allow it, sign in again with:</p>
{{range .Providers}}<form method="post" action="{{$.Action}}"><input type="hidden" name="session" value="{{$.Session}}">
<input type="hidden" name="csrf" value="{{$.CSRF}}"><input type="hidden" name="idp" value="{{.ID}}">
<button class="button" id="idp-{{.ID}}" type="submit">{{.Name}}</button></form>
{{end}}</body></html>{{end}}

{{define "reauthdone"}}{{template "head" "Identity confirmed"}}
<h1>Identity confirmed</h1>
<p>You confirmed that you are <strong>{{.UserID}}</strong>. You may close this window and go back to your client.</p>
<script nonce="{{.Nonce}}">
if (window.onAuthDone) { window.onAuthDone(); }
else if (window.opener && window.opener.postMessage) { window.opener.postMessage("authDone", "*"); }
</script>
</body></html>{{end}}

{{define "error"}}{{template "head" .Title}}
<h1>{{.Title}}</h1>
<p id="detail">{{.Detail}}</p>
</body></html>{{end}}
`))

// writePage writes an HTML page that no other site may frame or cache.
func writePage(w http.ResponseWriter, status int, name string, data any) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	if h.Get("Content-Security-Policy") == "" {
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	}
	w.WriteHeader(status)
	_ = pages.ExecuteTemplate(w, name, data)
}

// renderError shows a failed sign-in.
func (s *Service) renderError(w http.ResponseWriter, status int, title, detail string) {
	writePage(w, status, "error", struct{ Title, Detail string }{title, detail})
}

// renderChooser lists the providers, each linking to its redirect endpoint.
func (s *Service) renderChooser(w http.ResponseWriter, redirectURL string) {
	type item struct{ ID, Name, Href string }
	var items []item
	for _, p := range s.providers {
		href := "/_matrix/client/v3/login/sso/redirect/" + url.PathEscape(p.cfg.ID) + "?redirectUrl=" + url.QueryEscape(redirectURL)
		items = append(items, item{p.cfg.ID, p.cfg.Name, href})
	}
	writePage(w, http.StatusOK, "choose", struct{ Providers []item }{items})
}

// renderConfirm asks before handing a login token to the client at redirectURL.
func (s *Service) renderConfirm(w http.ResponseWriter, userID, redirectURL, flow string) {
	host := redirectURL
	if u, err := url.Parse(redirectURL); err == nil && u.Host != "" {
		host = u.Host
	} else if err == nil {
		host = u.Scheme + ":" // a mobile app's own scheme
	}
	writePage(w, http.StatusOK, "confirm", struct{ Host, UserID, Action, Flow string }{host, userID, ContinuePath, flow})
}
