#ifndef RUNG_WORKER_PYTHON_MODULE_H_
#define RUNG_WORKER_PYTHON_MODULE_H_

namespace rung {
// The source of client/python/rung/__init__.py, embedded at build time.
extern const char kPythonModule[];
}  // namespace rung

#endif  // RUNG_WORKER_PYTHON_MODULE_H_
