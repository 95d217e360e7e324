// spdlog, compiled once into the agent instead of loaded as libspdlog.so.
//
// Debian ships spdlog as a shared library. Mapped whole, it cost the agent about 0.5 MiB of
// resident file pages for the few hundred functions it calls
// (docs/decisions/0019-link-small-libraries-statically.md). Every Starling target includes the
// spdlog headers in compiled-library mode (SPDLOG_COMPILED_LIB, through starling_spdlog), so
// they declare the out-of-line functions; this file is the one place that defines them: it
// includes spdlog's -inl.h sources and instantiates the sink templates Starling and spdlog's
// default logger use.
#include <mutex>

#include <spdlog/common-inl.h>
#include <spdlog/details/backtracer-inl.h>
#include <spdlog/details/log_msg-inl.h>
#include <spdlog/details/log_msg_buffer-inl.h>
#include <spdlog/details/os-inl.h>
#include <spdlog/details/periodic_worker-inl.h>
#include <spdlog/details/registry-inl.h>
#include <spdlog/logger-inl.h>
#include <spdlog/pattern_formatter-inl.h>
#include <spdlog/sinks/ansicolor_sink-inl.h>
#include <spdlog/sinks/base_sink-inl.h>
#include <spdlog/sinks/sink-inl.h>
#include <spdlog/sinks/stdout_sinks-inl.h>
#include <spdlog/spdlog-inl.h>

// The sinks: stderr (the agent's log), and the colored stdout sink spdlog's registry creates
// as its default logger before the agent installs its own.
template class spdlog::sinks::base_sink<std::mutex>;
template class spdlog::sinks::stdout_sink_base<spdlog::details::console_mutex>;
template class spdlog::sinks::stdout_sink<spdlog::details::console_mutex>;
template class spdlog::sinks::stderr_sink<spdlog::details::console_mutex>;
template class spdlog::sinks::ansicolor_sink<spdlog::details::console_mutex>;
template class spdlog::sinks::ansicolor_stdout_sink<spdlog::details::console_mutex>;
