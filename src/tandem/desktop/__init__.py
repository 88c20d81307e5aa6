"""Desktop integration: a double-click on a `*.tandem` placeholder runs `tandem open`.

The data files here (a Desktop Entry and a shared-mime-info type) are installed into the
user's XDG data home by `tandem.desktop.install`.
"""
