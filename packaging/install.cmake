# Run by `cmake --install` (CMakeLists.txt, "Installation"): here
# CMAKE_INSTALL_PREFIX is the --prefix of that command and DESTDIR comes from
# the environment (file(INSTALL) prepends it). FORYOU_SOURCE_DIR,
# FORYOU_BINARY_DIR and the FORYOU_*DIR install directories (GNUInstallDirs,
# relative to the prefix unless absolute) are set just before by install(CODE).
#
# 1. config/foryou.toml to SYSCONFDIR/foryou/foryou.toml, unless one is there
#    already: an operator's edited config is never overwritten; the new one
#    then goes beside it as foryou.toml.new.
# 2. packaging/foryou.service to PREFIX/lib/systemd/system, with its paths
#    (written for the default prefix, /usr/local) rewritten to where the
#    binary, the config and the docs were installed.

foreach(dir BINDIR SYSCONFDIR DOCDIR)
  if(IS_ABSOLUTE "${FORYOU_${dir}}")
    set(_foryou_${dir} "${FORYOU_${dir}}")
  else()
    set(_foryou_${dir} "${CMAKE_INSTALL_PREFIX}/${FORYOU_${dir}}")
  endif()
endforeach()
set(_foryou_confdir "${_foryou_SYSCONFDIR}/foryou")

set(_foryou_conf "${FORYOU_SOURCE_DIR}/config/foryou.toml")
set(_foryou_installed_conf "$ENV{DESTDIR}${_foryou_confdir}/foryou.toml")
if(EXISTS "${_foryou_installed_conf}")
  file(SHA256 "${_foryou_conf}" _foryou_new)
  file(SHA256 "${_foryou_installed_conf}" _foryou_old)
  if(_foryou_new STREQUAL _foryou_old)
    message(STATUS "Up-to-date: ${_foryou_installed_conf}")
  else()
    message(STATUS "Keeping ${_foryou_installed_conf} (it differs from config/foryou.toml): the new one is foryou.toml.new")
    file(INSTALL DESTINATION "${_foryou_confdir}" TYPE FILE RENAME foryou.toml.new FILES "${_foryou_conf}")
  endif()
else()
  file(INSTALL DESTINATION "${_foryou_confdir}" TYPE FILE FILES "${_foryou_conf}")
endif()

file(READ "${FORYOU_SOURCE_DIR}/packaging/foryou.service" _foryou_unit)
string(REPLACE "/usr/local/bin/foryou" "${_foryou_BINDIR}/foryou" _foryou_unit "${_foryou_unit}")
string(REPLACE "/usr/local/etc/foryou" "${_foryou_confdir}" _foryou_unit "${_foryou_unit}")
string(REPLACE "/usr/local/share/doc/foryou" "${_foryou_DOCDIR}" _foryou_unit "${_foryou_unit}")
file(WRITE "${FORYOU_BINARY_DIR}/packaging/foryou.service" "${_foryou_unit}")
file(INSTALL DESTINATION "${CMAKE_INSTALL_PREFIX}/lib/systemd/system" TYPE FILE
     FILES "${FORYOU_BINARY_DIR}/packaging/foryou.service")
