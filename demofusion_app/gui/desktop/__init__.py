"""Where the window meets the operating system: the display check before Qt starts, one running
instance, the taskbar's progress, notifications, the app id, icon and opening folders.
"""
