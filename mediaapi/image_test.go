package mediaapi

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"testing"
)

func TestGeometry(t *testing.T) {
	for _, tc := range []struct {
		srcW, srcH, w, h int
		method           string
		want             image.Point
		wantSrc          image.Rectangle
	}{
		// scale: fits within the request, keeps the aspect ratio, never upscales.
		{2000, 1500, 320, 240, methodScale, image.Pt(320, 240), image.Rect(0, 0, 2000, 1500)},
		{2000, 1000, 64, 64, methodScale, image.Pt(64, 32), image.Rect(0, 0, 2000, 1000)},
		{1000, 2000, 64, 64, methodScale, image.Pt(32, 64), image.Rect(0, 0, 1000, 2000)},
		{100, 50, 640, 480, methodScale, image.Pt(100, 50), image.Rect(0, 0, 100, 50)},
		{3000, 1, 32, 32, methodScale, image.Pt(32, 1), image.Rect(0, 0, 3000, 1)},
		// crop: exactly the request, from the centre.
		{2000, 1500, 64, 64, methodCrop, image.Pt(64, 64), image.Rect(250, 0, 1750, 1500)},
		{2000, 1500, 96, 32, methodCrop, image.Pt(96, 32), image.Rect(0, 416, 2000, 1083)},
		{200, 100, 64, 64, methodCrop, image.Pt(64, 64), image.Rect(50, 0, 150, 100)},
		// crop of a source too small: the requested aspect ratio at the original scale.
		{100, 50, 64, 64, methodCrop, image.Pt(50, 50), image.Rect(25, 0, 75, 50)},
		{40, 30, 64, 64, methodCrop, image.Pt(30, 30), image.Rect(5, 0, 35, 30)},
	} {
		t.Run(fmt.Sprintf("%dx%d_%s_%dx%d", tc.srcW, tc.srcH, tc.method, tc.w, tc.h), func(t *testing.T) {
			got, src := geometry(tc.srcW, tc.srcH, tc.w, tc.h, tc.method)
			if got != tc.want || src != tc.wantSrc {
				t.Errorf("geometry = %v from %v, want %v from %v", got, src, tc.want, tc.wantSrc)
			}
		})
	}
}

func TestThumbnailEachFormat(t *testing.T) {
	for _, tc := range []struct {
		format   string
		wantType string
	}{
		{"jpeg", "image/jpeg"},
		{"png", "image/png"},
		{"gif", "image/png"},
		{"webp", "image/png"},
	} {
		t.Run(tc.format, func(t *testing.T) {
			src, _ := encode(t, tc.format, 150, 103)
			info, err := probeImage(bytes.NewReader(src), 1e6)
			if err != nil {
				t.Fatal(err)
			}
			if info.Width != 150 || info.Height != 103 {
				t.Fatalf("probe: %+v", info)
			}
			for _, m := range []struct {
				method      string
				wantW, wntH int
			}{{methodCrop, 64, 64}, {methodScale, 64, 44}} {
				out, ct, err := thumbnail(bytes.NewReader(src), info, 64, 64, m.method)
				if err != nil {
					t.Fatal(err)
				}
				w, h, _ := decodeSize(t, out)
				if ct != tc.wantType || w != m.wantW || h != m.wntH {
					t.Errorf("%s: %s %dx%d, want %s %dx%d", m.method, ct, w, h, tc.wantType, m.wantW, m.wntH)
				}
			}
		})
	}
}

func TestProbeRefusesDecompressionBomb(t *testing.T) {
	bomb := pngBomb(t, 100000, 100000)
	if len(bomb) > 100 {
		t.Fatalf("bomb is %d bytes", len(bomb))
	}
	if _, err := probeImage(bytes.NewReader(bomb), 32_000_000); !errors.Is(err, errImageTooLarge) {
		t.Fatalf("probe of a 10-gigapixel header: %v, want errImageTooLarge", err)
	}
	if _, err := probeImage(bytes.NewReader([]byte("<svg xmlns='http://www.w3.org/2000/svg'/>")), 1e6); !errors.Is(err, errNotAnImage) {
		t.Fatalf("probe of SVG: %v, want errNotAnImage", err)
	}
}

func TestHalve(t *testing.T) {
	src := image.NewRGBA(image.Rect(0, 0, 3, 2)) // the odd column is dropped
	copy(src.Pix, []byte{
		0, 0, 0, 0, 100, 200, 4, 255, 9, 9, 9, 9,
		10, 20, 30, 255, 50, 60, 70, 255, 9, 9, 9, 9,
	})
	got := halve(src)
	if got.Rect != image.Rect(0, 0, 1, 1) {
		t.Fatalf("size %v", got.Rect)
	}
	if want := []byte{40, 70, 26, 191}; !bytes.Equal(got.Pix, want) {
		t.Errorf("pixel %v, want %v", got.Pix, want)
	}
}
