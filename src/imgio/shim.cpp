// OpenCV's image codecs behind a C interface, built as a shared object that aullm loads the first
// time it reads or writes an image file: linked into the executable, libopencv_imgcodecs (with
// GDAL, GDCM, Poppler and ~110 other libraries behind it) cost every aullm process ~0.25 s of
// start-up, cold, for work most commands never do.
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

namespace {

void set_error(char* err, size_t len, const char* what) {
    if (err && len) {
        std::strncpy(err, what, len - 1);
        err[len - 1] = 0;
    }
}

std::vector<int> params_of(const int* params, int n) {
    return std::vector<int>(params, params + (n > 0 ? n : 0));
}

}  // namespace

extern "C" {

// An image's pixels as OpenCV holds them: rows x cols of `type`, rows `step` bytes apart.
struct aullm_image {
    int rows;
    int cols;
    int type;
    size_t step;
    unsigned char* data;
};

// 0: read into `out_image` (its pixels a malloc'd continuous copy, rows * step bytes);
// 1: OpenCV could not read or decode the file; -1: an exception, its message in `err`.
int aullm_imread(const char* path, int flags, aullm_image* out_image, char* err, size_t errlen) {
    try {
        cv::Mat m = cv::imread(path, flags);
        if (m.empty()) return 1;
        if (!m.isContinuous()) m = m.clone();
        size_t n = m.total() * m.elemSize();
        unsigned char* out = static_cast<unsigned char*>(std::malloc(n ? n : 1));
        if (!out) {
            set_error(err, errlen, "out of memory");
            return -1;
        }
        std::memcpy(out, m.data, n);
        out_image->rows = m.rows;
        out_image->cols = m.cols;
        out_image->type = m.type();
        out_image->step = m.cols * m.elemSize();
        out_image->data = out;
        return 0;
    } catch (const std::exception& e) {
        set_error(err, errlen, e.what());
        return -1;
    }
}

// 0: written (`ok` as cv::imwrite returned it); -1: an exception, its message in `err`.
int aullm_imwrite(const char* path, const aullm_image* img, const int* params, int nparams,
                  int* ok, char* err, size_t errlen) {
    try {
        cv::Mat m(img->rows, img->cols, img->type, img->data, img->step);
        *ok = cv::imwrite(path, m, params_of(params, nparams)) ? 1 : 0;
        return 0;
    } catch (const std::exception& e) {
        set_error(err, errlen, e.what());
        return -1;
    }
}

// 0: encoded (a malloc'd copy of the bytes in `out`); 1: cv::imencode returned false; -1: an
// exception, its message in `err`.
int aullm_imencode(const char* ext, const aullm_image* img, const int* params, int nparams,
                   unsigned char** out, size_t* outlen, char* err, size_t errlen) {
    try {
        cv::Mat m(img->rows, img->cols, img->type, img->data, img->step);
        std::vector<unsigned char> buf;
        if (!cv::imencode(ext, m, buf, params_of(params, nparams))) return 1;
        unsigned char* o = static_cast<unsigned char*>(std::malloc(buf.size() ? buf.size() : 1));
        if (!o) {
            set_error(err, errlen, "out of memory");
            return -1;
        }
        if (!buf.empty()) std::memcpy(o, buf.data(), buf.size());
        *out = o;
        *outlen = buf.size();
        return 0;
    } catch (const std::exception& e) {
        set_error(err, errlen, e.what());
        return -1;
    }
}

void aullm_free(void* p) { std::free(p); }

}  // extern "C"
