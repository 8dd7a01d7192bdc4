package mediaapi

import (
	"bytes"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

const (
	// maxOGProperties and maxOGValue bound what a page can put in a preview.
	maxOGProperties = 32
	maxOGValue      = 1000
)

// parseOpenGraph returns the OpenGraph properties (https://ogp.me/) of an HTML page: every
// <meta property="og:..." content="...">, the first of each, with og:title falling back to
// <title> and og:description to <meta name="description">.
func parseOpenGraph(page []byte) map[string]string {
	og := map[string]string{}
	var title, description string
	z := html.NewTokenizer(bytes.NewReader(page))
	inTitle := false
	for {
		switch z.Next() {
		case html.ErrorToken:
			if og["og:title"] == "" && title != "" {
				og["og:title"] = title
			}
			if og["og:description"] == "" && description != "" {
				og["og:description"] = description
			}
			return og
		case html.StartTagToken, html.SelfClosingTagToken:
			tok := z.Token()
			switch tok.DataAtom {
			case atom.Title:
				inTitle = title == ""
			case atom.Meta:
				key, content := metaProperty(tok)
				switch {
				case strings.HasPrefix(key, "og:") && content != "":
					if _, seen := og[key]; !seen && len(og) < maxOGProperties {
						og[key] = clip(content)
					}
				case key == "description" && description == "":
					description = clip(content)
				}
			}
		case html.TextToken:
			if inTitle {
				title = clip(strings.Join(strings.Fields(string(z.Text())), " "))
				inTitle = false
			}
		case html.EndTagToken:
			inTitle = false
		}
	}
}

// metaProperty returns the property (or name) and content of a <meta> tag.
func metaProperty(tok html.Token) (key, content string) {
	for _, a := range tok.Attr {
		switch strings.ToLower(a.Key) {
		case "property":
			key = strings.ToLower(strings.TrimSpace(a.Val))
		case "name":
			if key == "" {
				key = strings.ToLower(strings.TrimSpace(a.Val))
			}
		case "content":
			content = strings.TrimSpace(a.Val)
		}
	}
	return key, content
}

// clip shortens s to maxOGValue bytes at a rune boundary.
func clip(s string) string {
	if len(s) <= maxOGValue {
		return s
	}
	s = s[:maxOGValue]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}
