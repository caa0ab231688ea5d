# Ferry: build and system install.
#
#   make build                                  release binaries (cargo)
#   sudo make install [PREFIX=/usr] [DESTDIR=]  every file in its conventional place
#   sudo make uninstall [PREFIX=/usr] [DESTDIR=]
#
# Paths follow the usual GNU names and can be overridden one by one. Unit files are
# rewritten on install so they point at $(LIBEXECDIR)/ferry-hook and $(BINDIR)/ferryctl.

PREFIX ?= /usr
SYSCONFDIR ?= /etc
BINDIR ?= $(PREFIX)/bin
LIBEXECDIR ?= $(PREFIX)/libexec
DATADIR ?= $(PREFIX)/share
LOCALEDIR ?= $(DATADIR)/locale
UDEVRULESDIR ?= $(PREFIX)/lib/udev/rules.d
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
POLKITACTIONSDIR ?= $(DATADIR)/polkit-1/actions
APPLICATIONSDIR ?= $(DATADIR)/applications
AUTOSTARTDIR ?= $(SYSCONFDIR)/xdg/autostart
METAINFODIR ?= $(DATADIR)/metainfo
ICONSDIR ?= $(DATADIR)/icons
DBUSSERVICESDIR ?= $(DATADIR)/dbus-1/services
MANDIR ?= $(DATADIR)/man
BASHCOMPLETIONDIR ?= $(DATADIR)/bash-completion/completions
ZSHCOMPLETIONDIR ?= $(DATADIR)/zsh/site-functions
FISHCOMPLETIONDIR ?= $(DATADIR)/fish/vendor_completions.d

CARGO ?= cargo
CARGO_TARGET_DIR ?= target
TARGET_DIR ?= $(CARGO_TARGET_DIR)/release
BUILDDIR ?= $(CARGO_TARGET_DIR)/data
# Binaries installed to $(BINDIR); ferry-hook goes to $(LIBEXECDIR).
USER_BINARIES ?= ferryctl ferry
HOOK_BINARY ?= ferry-hook

INSTALL ?= install

APP_ID := io.github.ferry.Ferry
UNITS := $(notdir $(wildcard data/systemd/*.service data/systemd/*.socket))
UDEV_RULES := $(notdir $(wildcard udev-rules/*.rules))
TMPFILES := $(notdir $(wildcard data/tmpfiles.d/*.conf))
DBUS_SERVICES := $(notdir $(wildcard data/dbus-1/services/*.service))
ICONS := $(patsubst data/icons/%,%,$(shell find data/icons -type f \( -name '*.svg' -o -name '*.png' \) 2>/dev/null))

.PHONY: all build data install uninstall

all: build

build:
	$(CARGO) build --release -p ferryctl -p ferry-hook -p ferry

# Translated desktop, AppStream and polkit files and compiled translations, under
# $(BUILDDIR): applications/, autostart/, metainfo/, polkit/ and locale/ (scripts/i18n.sh).
data:
	@[ -x scripts/i18n.sh ] || { echo "scripts/i18n.sh is missing: it builds the translated data files" >&2; exit 1; }
	rm -rf $(BUILDDIR)
	BINDIR=$(BINDIR) scripts/i18n.sh all $(abspath $(BUILDDIR))

install: data
	@set -e; for b in $(USER_BINARIES) $(HOOK_BINARY); do \
	  [ -x "$(TARGET_DIR)/$$b" ] || { echo "$(TARGET_DIR)/$$b is missing: run 'make build' first" >&2; exit 1; }; done
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBEXECDIR)
	$(if $(USER_BINARIES),$(INSTALL) -m 0755 $(addprefix $(TARGET_DIR)/,$(USER_BINARIES)) $(DESTDIR)$(BINDIR)/)
	$(INSTALL) -m 0755 $(TARGET_DIR)/$(HOOK_BINARY) $(DESTDIR)$(LIBEXECDIR)/
	@# Manual pages and completions come from the binaries' own argument definitions;
	@# ferry.conf(5) is written by hand.
	$(INSTALL) -d $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8
	$(INSTALL) -m 0644 data/man/ferry.conf.5 $(DESTDIR)$(MANDIR)/man5/
	$(TARGET_DIR)/$(HOOK_BINARY) --generate-man $(BUILDDIR)/man
	$(INSTALL) -m 0644 $(BUILDDIR)/man/$(HOOK_BINARY).8 $(DESTDIR)$(MANDIR)/man8/
	@set -e; if [ -n "$(filter ferryctl,$(USER_BINARIES))" ]; then \
	  $(TARGET_DIR)/ferryctl generate-man $(BUILDDIR)/man; \
	  $(INSTALL) -m 0644 $(BUILDDIR)/man/ferryctl*.1 $(DESTDIR)$(MANDIR)/man1/; \
	  for shell in bash zsh fish; do $(TARGET_DIR)/ferryctl generate-completions $$shell $(BUILDDIR)/completions; done; \
	  $(INSTALL) -D -m 0644 $(BUILDDIR)/completions/ferryctl.bash $(DESTDIR)$(BASHCOMPLETIONDIR)/ferryctl; \
	  $(INSTALL) -D -m 0644 $(BUILDDIR)/completions/_ferryctl $(DESTDIR)$(ZSHCOMPLETIONDIR)/_ferryctl; \
	  $(INSTALL) -D -m 0644 $(BUILDDIR)/completions/ferryctl.fish $(DESTDIR)$(FISHCOMPLETIONDIR)/ferryctl.fish; fi
	$(INSTALL) -d $(DESTDIR)$(UDEVRULESDIR) $(DESTDIR)$(SYSTEMDUNITDIR) $(DESTDIR)$(TMPFILESDIR)
	$(INSTALL) -m 0644 $(addprefix udev-rules/,$(UDEV_RULES)) $(DESTDIR)$(UDEVRULESDIR)/
	@set -e; for u in $(UNITS); do \
	  sed -e 's|/usr/libexec/|$(LIBEXECDIR)/|g' -e 's|/usr/bin/|$(BINDIR)/|g' data/systemd/$$u > $(DESTDIR)$(SYSTEMDUNITDIR)/$$u; \
	  chmod 0644 $(DESTDIR)$(SYSTEMDUNITDIR)/$$u; done
	$(INSTALL) -m 0644 $(addprefix data/tmpfiles.d/,$(TMPFILES)) $(DESTDIR)$(TMPFILESDIR)/
	$(INSTALL) -d $(DESTDIR)$(SYSCONFDIR)/ferry
	@# Never overwrite a policy the administrator wrote.
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/ferry/ferry.conf ]; then \
	  echo "keeping the existing $(DESTDIR)$(SYSCONFDIR)/ferry/ferry.conf"; \
	else $(INSTALL) -m 0644 data/ferry.conf $(DESTDIR)$(SYSCONFDIR)/ferry/ferry.conf; fi
	@set -e; copy() { from=$$1 to=$$2; $(INSTALL) -d "$$to"; \
	  for f in "$$from"/*; do [ -f "$$f" ] && $(INSTALL) -m 0644 "$$f" "$$to"/ && echo "installed $$to/$${f##*/}"; done; true; }; \
	  copy $(BUILDDIR)/applications $(DESTDIR)$(APPLICATIONSDIR); \
	  copy $(BUILDDIR)/autostart $(DESTDIR)$(AUTOSTARTDIR); \
	  copy $(BUILDDIR)/metainfo $(DESTDIR)$(METAINFODIR); \
	  copy $(BUILDDIR)/polkit $(DESTDIR)$(POLKITACTIONSDIR)
	@set -e; for i in $(ICONS); do $(INSTALL) -D -m 0644 data/icons/$$i $(DESTDIR)$(ICONSDIR)/$$i; done
	$(INSTALL) -d $(DESTDIR)$(DBUSSERVICESDIR)
	@# D-Bus activation of the app (DBusActivatable=true in its desktop file).
	@set -e; for s in $(DBUS_SERVICES); do \
	  sed -e 's|@bindir@|$(BINDIR)|g' data/dbus-1/services/$$s > $(DESTDIR)$(DBUSSERVICESDIR)/$$s; \
	  chmod 0644 $(DESTDIR)$(DBUSSERVICESDIR)/$$s; done
	@set -e; for mo in $$(cd $(BUILDDIR)/locale && find . -name ferry.mo); do \
	  $(INSTALL) -D -m 0644 $(BUILDDIR)/locale/$${mo#./} $(DESTDIR)$(LOCALEDIR)/$${mo#./}; done

uninstall:
	rm -f $(addprefix $(DESTDIR)$(BINDIR)/,$(USER_BINARIES)) $(DESTDIR)$(LIBEXECDIR)/$(HOOK_BINARY)
	rm -f $(addprefix $(DESTDIR)$(UDEVRULESDIR)/,$(UDEV_RULES))
	rm -f $(addprefix $(DESTDIR)$(SYSTEMDUNITDIR)/,$(UNITS))
	rm -f $(addprefix $(DESTDIR)$(TMPFILESDIR)/,$(TMPFILES))
	rm -f $(DESTDIR)$(POLKITACTIONSDIR)/$(APP_ID)*.policy
	rm -f $(DESTDIR)$(APPLICATIONSDIR)/$(APP_ID)*.desktop $(DESTDIR)$(AUTOSTARTDIR)/$(APP_ID)*.desktop
	rm -f $(DESTDIR)$(METAINFODIR)/$(APP_ID)*.metainfo.xml
	rm -f $(addprefix $(DESTDIR)$(ICONSDIR)/,$(ICONS))
	rm -f $(addprefix $(DESTDIR)$(DBUSSERVICESDIR)/,$(DBUS_SERVICES))
	rm -f $(DESTDIR)$(LOCALEDIR)/*/LC_MESSAGES/ferry.mo
	rm -f $(DESTDIR)$(MANDIR)/man1/ferryctl.1 $(DESTDIR)$(MANDIR)/man1/ferryctl-*.1
	rm -f $(DESTDIR)$(MANDIR)/man5/ferry.conf.5 $(DESTDIR)$(MANDIR)/man8/$(HOOK_BINARY).8
	rm -f $(DESTDIR)$(BASHCOMPLETIONDIR)/ferryctl $(DESTDIR)$(ZSHCOMPLETIONDIR)/_ferryctl
	rm -f $(DESTDIR)$(FISHCOMPLETIONDIR)/ferryctl.fish
	@# The policy goes only if nobody changed it.
	@if cmp -s data/ferry.conf $(DESTDIR)$(SYSCONFDIR)/ferry/ferry.conf; then \
	  rm -f $(DESTDIR)$(SYSCONFDIR)/ferry/ferry.conf; rmdir $(DESTDIR)$(SYSCONFDIR)/ferry 2>/dev/null || true; \
	elif [ -e $(DESTDIR)$(SYSCONFDIR)/ferry/ferry.conf ]; then \
	  echo "keeping $(DESTDIR)$(SYSCONFDIR)/ferry/ferry.conf: it was changed"; fi
