from dalal_console.app import NAME, build_app
from dalal_console.config import ConsoleSettings
from dalal_shared.service import main_for

if __name__ == "__main__":
    main_for(NAME, ConsoleSettings, build_app)
